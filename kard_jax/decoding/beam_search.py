"""Compiled beam search with T5X's length penalty, over the same step function as `decode.py`.

Scores are `log p(sequence) / ((5 + length) / 6) ** alpha` (Wu et al. 2016, as in T5X), where length
counts generated tokens including EOS. A hypothesis finishes when it emits EOS, or when it reaches
`max_new_tokens` (then it competes with the EOS-terminated ones under the same penalty, as in
`transformers`). Each step keeps the 2K best extensions, so K live beams survive even if K of them
end at once. The search stops early once no live beam can beat the K-th finished one.

The cache is kept flat, [batch * beams, ...] along each array's batch axis (rows of one input
contiguous), and reordered each step by a per-input gather, which partitions over the batch axis
like the rest of the step. Arrays without a batch axis (declared None) are shared by every beam.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
from jax import lax

from kard_jax.decoding.decode import (EOS_ID, PAD_ID, BatchAxes, Cache, DecodeResult,
                                      TokensToLogits, expand_batch, map_batch_axis)

# A finite "minus infinity": sums of a few of these stay finite, so no inf - inf = NaN.
NEG_INF = -1.0e9


def length_penalty(length: jnp.ndarray, alpha: float) -> jnp.ndarray:
  return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


@flax.struct.dataclass
class _BeamState:
  step: jnp.ndarray  # scalar int32
  live_tokens: jnp.ndarray  # [B, K, L]
  live_logp: jnp.ndarray  # [B, K]
  last_token: jnp.ndarray  # [B * K]
  done_tokens: jnp.ndarray  # [B, K, L]
  done_scores: jnp.ndarray  # [B, K]
  done_flags: jnp.ndarray  # [B, K] bool: slot holds a real finished hypothesis
  cache: Cache  # leaves [B * K, ...]


def _take_per_row(x_BN: jnp.ndarray, idx_BM: jnp.ndarray) -> jnp.ndarray:
  """x[b, idx[b, m]] for arrays [B, N, ...]: a batched gather that shards over B."""
  return jax.vmap(lambda x, i: x[i])(x_BN, idx_BM)


def _reorder_cache(cache: Cache, batch_axes: BatchAxes | None, parents_BK: jnp.ndarray,
                   batch: int, beams: int) -> Cache:
  """Gives every new beam the cache rows of the beam it extends, along each array's batch axis
  (which must hold batch * beams rows); arrays without one are shared and left as they are."""

  def reorder(x, axis):
    x = jnp.moveaxis(x, axis, 0)
    x_BK = x.reshape((batch, beams) + x.shape[1:])
    return jnp.moveaxis(_take_per_row(x_BK, parents_BK).reshape(x.shape), 0, axis)

  return map_batch_axis(reorder, cache, batch_axes, batch * beams)


def _top(values_BN: jnp.ndarray, k: int, *arrays: jnp.ndarray):
  """The k best entries of each row (ties: lower index) and the same slots of `arrays`."""
  top_vals, idx = lax.top_k(values_BN, k)
  return (top_vals, idx) + tuple(_take_per_row(a, idx) for a in arrays)


def beam_search(tokens_to_logits: TokensToLogits, cache: Cache, first_tokens_B: jnp.ndarray, *,
                beams: int, max_new_tokens: int, alpha: float = 0.6, eos_id: int = EOS_ID,
                pad_id: int = PAD_ID, min_new_tokens: int = 0,
                cache_batch_axes: BatchAxes | None = None) -> DecodeResult:
  """Returns the `beams` best hypotheses per input, best first, with length-penalised scores.

  `cache` and `first_tokens_B` are for the plain batch; they are repeated per beam here, and the
  cache reordered each step, along `cache_batch_axes` (default `decode.batch_major`).
  Slots that never received a real hypothesis (only possible when the vocabulary is smaller than
  the beam) score `NEG_INF`.
  """
  if beams < 1 or max_new_tokens < 1:
    raise ValueError(f"need beams >= 1 and max_new_tokens >= 1, got {beams}, {max_new_tokens}")
  batch = first_tokens_B.shape[0]
  k, length = beams, max_new_tokens
  state = _BeamState(
      step=jnp.zeros((), jnp.int32),
      live_tokens=jnp.full((batch, k, length), pad_id, jnp.int32),
      # Only beam 0 is real at the start; the copies must not be extended in parallel.
      live_logp=jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (batch, 1)),
      last_token=jnp.repeat(first_tokens_B.astype(jnp.int32), k),
      done_tokens=jnp.full((batch, k, length), pad_id, jnp.int32),
      done_scores=jnp.full((batch, k), NEG_INF, jnp.float32),
      done_flags=jnp.zeros((batch, k), bool),
      cache=expand_batch(cache, batch, k, cache_batch_axes),
  )
  max_penalty = length_penalty(jnp.asarray(length), alpha)

  def cond(s: _BeamState):
    # Live log-probs only fall, and alpha >= 0 makes the penalty grow with length, so the best a
    # live beam can still reach is its current log-prob under the longest length's penalty.
    best_live = s.live_logp[:, 0] / max_penalty
    worst_done = jnp.where(s.done_flags[:, -1], s.done_scores[:, -1], NEG_INF)
    settled = jnp.all(worst_done > best_live) if alpha >= 0 else jnp.array(False)
    return (s.step < length) & ~settled

  def body(s: _BeamState) -> _BeamState:
    logits, cache = tokens_to_logits(s.last_token[:, None], s.cache, s.step)
    logp_BKV = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    vocab = logp_BKV.shape[-1]
    logp_BKV = logp_BKV.reshape(batch, k, vocab)
    if min_new_tokens > 0:
      too_early = (jnp.arange(vocab) == eos_id) & (s.step < min_new_tokens)
      logp_BKV = jnp.where(too_early, NEG_INF, logp_BKV)
    cand_BKV = s.live_logp[:, :, None] + logp_BKV
    cand_logp, flat_idx = lax.top_k(cand_BKV.reshape(batch, k * vocab), 2 * k)  # [B, 2K]
    parent, token = flat_idx // vocab, (flat_idx % vocab).astype(jnp.int32)
    cand_tokens = _take_per_row(s.live_tokens, parent)
    cand_tokens = lax.dynamic_update_slice(cand_tokens, token[:, :, None], (0, 0, s.step))
    real = cand_logp > NEG_INF / 2  # not an extension of a placeholder beam
    ends = (token == eos_id) | (s.step + 1 >= length)

    # Finished: merge the ending candidates into the K best so far.
    new_scores = jnp.where(ends & real, cand_logp / length_penalty(s.step + 1, alpha), NEG_INF)
    _, _, done_tokens, done_scores, done_flags = _top(
        jnp.concatenate([s.done_scores, new_scores], 1), k,
        jnp.concatenate([s.done_tokens, cand_tokens], 1),
        jnp.concatenate([s.done_scores, new_scores], 1),
        jnp.concatenate([s.done_flags, ends & real], 1))

    # Live: the K best candidates that did not end.
    live_logp, _, live_tokens, live_parent, live_last = _top(
        jnp.where(ends, NEG_INF, cand_logp), k, cand_tokens, parent, token)
    return _BeamState(
        step=s.step + 1, live_tokens=live_tokens, live_logp=live_logp,
        last_token=live_last.reshape(-1), done_tokens=done_tokens, done_scores=done_scores,
        done_flags=done_flags,
        cache=_reorder_cache(cache, cache_batch_axes, live_parent, batch, k))

  final = lax.while_loop(cond, body, state)
  is_eos = final.done_tokens == eos_id
  lengths = jnp.where(is_eos.any(-1), jnp.argmax(is_eos, -1) + 1, length).astype(jnp.int32)
  return DecodeResult(final.done_tokens, final.done_scores, lengths)
