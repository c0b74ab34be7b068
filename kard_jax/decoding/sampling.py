"""Next-token choice from logits: temperature, exact top-k and top-p (nucleus) masks, sampling.

All functions are pure and jit-friendly; randomness only comes from explicit PRNG keys.

Tie rule (shared by both masks): tokens are ranked by logit, and equal logits are ranked by token id,
lower id first (the order `lax.top_k` guarantees). So top-k keeps exactly `k` tokens even when the
k-th and (k+1)-th logits are equal, and top-p's boundary is decided the same way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def masked_value(dtype) -> jnp.ndarray:
  """The logit given to excluded tokens: exp() of it underflows to exactly 0 in `dtype`."""
  return jnp.asarray(jnp.finfo(dtype).min, dtype)


def apply_mask(logits: jnp.ndarray, keep: jnp.ndarray) -> jnp.ndarray:
  return jnp.where(keep, logits, masked_value(logits.dtype))


def apply_temperature(logits: jnp.ndarray, temperature: float) -> jnp.ndarray:
  """Divides by the temperature; `temperature` must be > 0 (greedy is a separate code path)."""
  return logits / jnp.asarray(temperature, logits.dtype)


def _scatter_rows(values_BK: jnp.ndarray, indices_BK: jnp.ndarray, vocab: int) -> jnp.ndarray:
  """Places per-row values at per-row token ids in a [B, V] array (zeros elsewhere)."""
  rows = jnp.arange(indices_BK.shape[0])[:, None]
  out = jnp.zeros((indices_BK.shape[0], vocab), values_BK.dtype)
  return out.at[rows, indices_BK].set(values_BK)


def top_k_mask(logits_BV: jnp.ndarray, k: int) -> jnp.ndarray:
  """True for exactly the `k` best tokens of each row (ties: lower token id wins)."""
  vocab = logits_BV.shape[-1]
  if not 0 < k <= vocab:
    raise ValueError(f"top_k must be in [1, {vocab}], got {k}")
  _, idx_BK = lax.top_k(logits_BV, k)
  return _scatter_rows(jnp.ones(idx_BK.shape, bool), idx_BK, vocab)


def sorted_top_p_keep(sorted_logits_BK: jnp.ndarray, p: float) -> jnp.ndarray:
  """For logits sorted best first: keeps the shortest prefix whose probability reaches `p`.

  A token is kept when the probability of the tokens ranked before it is still below `p`; the
  best token is always kept, so at least one survives even for p <= 0.
  """
  probs = jax.nn.softmax(sorted_logits_BK.astype(jnp.float32), axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs
  first = jnp.arange(probs.shape[-1]) == 0
  return (before < p) | first


def top_p_mask(logits_BV: jnp.ndarray, p: float) -> jnp.ndarray:
  """True for the smallest set of best tokens whose probability is >= p (always >= 1 token).

  Sorts the whole vocabulary; `sample` avoids that when top-k already narrowed the candidates.
  """
  vocab = logits_BV.shape[-1]
  sorted_BV, idx_BV = lax.top_k(logits_BV, vocab)
  return _scatter_rows(sorted_top_p_keep(sorted_BV, p), idx_BV, vocab)


def filter_logits(logits_BV: jnp.ndarray, *, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> jnp.ndarray:
  """Temperature, then top-k, then top-p (the order `transformers` applies them), as masked logits.

  `top_k=0` (or >= vocabulary) and `top_p>=1` disable the respective filter.
  """
  logits_BV = apply_temperature(logits_BV, temperature)
  if top_k and top_k < logits_BV.shape[-1]:
    logits_BV = apply_mask(logits_BV, top_k_mask(logits_BV, top_k))
  if top_p < 1.0:
    logits_BV = apply_mask(logits_BV, top_p_mask(logits_BV, top_p))
  return logits_BV


def sample(rng: jax.Array, logits_BV: jnp.ndarray, *, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0) -> jnp.ndarray:
  """Draws one token per row from the filtered distribution of `filter_logits`.

  With top-k set, only the k candidates are ranked, renormalised for top-p and sampled from
  (no full-vocabulary sort); the distribution is the same as masking the whole vocabulary.
  """
  logits_BV = apply_temperature(logits_BV.astype(jnp.float32), temperature)
  if top_k and top_k < logits_BV.shape[-1]:
    vals_BK, idx_BK = lax.top_k(logits_BV, top_k)
    if top_p < 1.0:
      vals_BK = apply_mask(vals_BK, sorted_top_p_keep(vals_BK, top_p))
    choice_B = jax.random.categorical(rng, vals_BK, axis=-1)
    return jnp.take_along_axis(idx_BK, choice_B[:, None], axis=-1)[:, 0].astype(jnp.int32)
  if top_p < 1.0:
    logits_BV = apply_mask(logits_BV, top_p_mask(logits_BV, top_p))
  return jax.random.categorical(rng, logits_BV, axis=-1).astype(jnp.int32)


def greedy(logits_BV: jnp.ndarray) -> jnp.ndarray:
  """The argmax token per row (ties: lower token id, as `jnp.argmax`)."""
  return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)


def token_log_probs(logits_BV: jnp.ndarray, tokens_B: jnp.ndarray) -> jnp.ndarray:
  """log p(token) under the model's own distribution (temperature 1, no filtering)."""
  log_probs_BV = jax.nn.log_softmax(logits_BV.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(log_probs_BV, tokens_B[:, None], axis=-1)[:, 0]
