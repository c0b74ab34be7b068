"""kard_jax: knowledge-augmented reasoning distillation (KARD, Sci-CoT) in JAX/Flax."""

__version__ = "0.1.0"
