"""kard_jax.decoding."""
