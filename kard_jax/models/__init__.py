"""kard_jax.models."""
