"""kard_jax.retrieval."""
