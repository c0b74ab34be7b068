"""Token-level cross-entropy with label smoothing and z-loss, and the loss normalisers (as in T5X).

Pure functions of arrays. The per-token loss is T5X's: cross-entropy against smoothed one-hot
targets minus the smoothed distribution's own entropy (so a perfect model scores 0 for any
smoothing), plus `z_loss * log(Z)^2`, which keeps the softmax normaliser near 1.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Loss normalisers (T5X's SpecialLossNormalizingFactor, lower-case strings for gin).
NUM_REAL_TARGET_TOKENS = "num_real_target_tokens"
NUM_TOTAL_TARGET_TOKENS = "num_total_target_tokens"
AVERAGE_PER_SEQUENCE = "average_per_sequence"


def smoothed_entropy(vocab_size: int, label_smoothing: float) -> float:
  """Entropy of the smoothed target distribution: the lowest cross-entropy any model can reach."""
  if label_smoothing <= 0.0:
    return 0.0
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab_size - 1)
  return -(confidence * math.log(confidence) + (vocab_size - 1) * low * math.log(low))


def token_cross_entropy(logits_BxLxV: jax.Array, targets_BxL: jax.Array,
                        label_smoothing: float = 0.0,
                        z_loss: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Per-token (loss, z_loss), both [B, L]; `loss` already includes the z-loss term.

  Computed in float32 from a single log-softmax; the gradient is XLA's, which matches T5X's custom
  VJP (softmax - targets, plus 2 * z_loss * log Z * softmax).
  """
  logits = logits_BxLxV.astype(jnp.float32)
  vocab_size = logits.shape[-1]
  log_z_BxL = jax.nn.logsumexp(logits, axis=-1)
  log_probs = logits - log_z_BxL[..., None]
  target_logp_BxL = jnp.take_along_axis(log_probs, targets_BxL[..., None], axis=-1)[..., 0]
  if label_smoothing > 0.0:
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab_size - 1)
    # sum_v q_v log p_v with q = low everywhere except `confidence` at the target.
    mean_logp_BxL = jnp.sum(log_probs, axis=-1)
    cross_BxL = -(low * (mean_logp_BxL - target_logp_BxL) + confidence * target_logp_BxL)
    cross_BxL = cross_BxL - smoothed_entropy(vocab_size, label_smoothing)
  else:
    cross_BxL = -target_logp_BxL
  z_BxL = z_loss * jnp.square(log_z_BxL)
  return cross_BxL + z_BxL, z_BxL


def loss_weights_and_normalizer(targets_BxL: jax.Array, loss_weights_BxL: jax.Array | None,
                                normalizer: str | float | None,
                                segment_ids_BxL: jax.Array | None = None
                                ) -> tuple[jax.Array, jax.Array]:
  """(weights [B, L], denominator): the loss is sum(weights * token_loss) / denominator.

  `num_real_target_tokens` divides by the number of non-padding target tokens (those with a non-zero
  weight), so per-example weights scale an example's share of the loss instead of cancelling out.
  `average_per_sequence` gives every sequence (or packed segment) the same total weight.
  """
  if loss_weights_BxL is None:
    weights = (targets_BxL > 0).astype(jnp.float32)
  else:
    weights = loss_weights_BxL.astype(jnp.float32)
  real = (weights != 0).astype(jnp.float32)
  if normalizer is None:
    return weights, jnp.asarray(1.0, jnp.float32)
  if isinstance(normalizer, (int, float)):
    return weights, jnp.asarray(float(normalizer), jnp.float32)
  key = str(normalizer).lower()
  if key == NUM_REAL_TARGET_TOKENS:
    return weights, jnp.sum(real)
  if key == NUM_TOTAL_TARGET_TOKENS:
    return weights, jnp.asarray(float(targets_BxL.size), jnp.float32)
  if key == AVERAGE_PER_SEQUENCE:
    seg = segment_ids_BxL if segment_ids_BxL is not None else real.astype(jnp.int32)
    per_segment = _segment_totals(real, seg)
    weights = jnp.where(per_segment > 0, weights / jnp.maximum(per_segment, 1.0), 0.0)
    return weights, jnp.sum(jnp.where(real > 0, real / jnp.maximum(per_segment, 1.0), 0.0))
  raise ValueError(f"unknown loss_normalizing_factor {normalizer!r}; use a number, None, "
                   f"{NUM_REAL_TARGET_TOKENS!r}, {NUM_TOTAL_TARGET_TOKENS!r} or "
                   f"{AVERAGE_PER_SEQUENCE!r}")


def _segment_totals(values_BxL: jax.Array, segment_ids_BxL: jax.Array) -> jax.Array:
  """For each token, the sum of `values` over its (row, segment); segment 0 is padding."""
  batch, length = values_BxL.shape
  ids = (jnp.arange(batch)[:, None] * (length + 1) + segment_ids_BxL).reshape(-1)
  totals = jax.ops.segment_sum(values_BxL.reshape(-1), ids, num_segments=batch * (length + 1))
  return totals[ids].reshape(batch, length)


def segment_all_correct(correct_BxL: jax.Array, real_BxL: jax.Array,
                        segment_ids_BxL: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  """(sequences whose every real target token is right, number of sequences).

  In packed rows each segment counts as a sequence; unpacked rows are one segment each.
  """
  batch, length = real_BxL.shape
  real = real_BxL.astype(jnp.float32)
  seg = segment_ids_BxL if segment_ids_BxL is not None else jnp.ones_like(real, jnp.int32)
  ids = (jnp.arange(batch)[:, None] * (length + 1) + seg).reshape(-1)
  n = batch * (length + 1)
  size = jax.ops.segment_sum(real.reshape(-1), ids, num_segments=n)
  wrong = jax.ops.segment_sum((real * (1.0 - correct_BxL.astype(jnp.float32))).reshape(-1), ids,
                              num_segments=n)
  present = size > 0
  return jnp.sum(present & (wrong == 0)).astype(jnp.float32), jnp.sum(present).astype(jnp.float32)
