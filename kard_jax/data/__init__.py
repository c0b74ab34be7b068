"""kard_jax.data."""
