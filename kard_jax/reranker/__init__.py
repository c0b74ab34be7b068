"""kard_jax.reranker."""
