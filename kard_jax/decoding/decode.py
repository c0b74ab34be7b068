"""Compiled autoregressive decoding (greedy and sampling) over a model-agnostic step function.

The model is seen only through `tokens_to_logits(tokens_B1, cache, step) -> (logits_BV, cache)`:
feed one token per row, get the next-token logits and the updated key/value cache. `step` is the
scalar loop index (0 for the first generated token); adapters add their own offsets. The loop is a
`lax.while_loop`, so a whole batch (times `num_samples`) decodes in one XLA program and stops as soon
as every row has produced EOS or the length limit is reached.

Conventions (T5's ids): rows stop at EOS (id 1), which is kept in the output; every later position
is PAD (id 0). The `num_samples` decodes of one input are contiguous rows of the expanded batch
(row b * N + n), and results come back as [batch, num_samples, ...] in sampling order.
Sequence log-probs are the model's own (temperature 1, no top-k/top-p renormalisation), so greedy,
sampled and beam outputs are comparable and voting can rank answers by model likelihood.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
from jax import lax

from kard_jax.decoding import sampling

PAD_ID = 0
EOS_ID = 1

Cache = Any
# A tree shaped like a cache: each array's batch axis (an int), or None for an array that every row
# shares (e.g. a step count). Decoding repeats (sampling, beams) and reorders (beams) the cache
# along these axes only; see `batch_major` for the default and the model families' own
# `cache_batch_axes` (models.t5, models.gpt).
BatchAxes = Any
TokensToLogits = Callable[[jnp.ndarray, Cache, jnp.ndarray], tuple[jnp.ndarray, Cache]]


@flax.struct.dataclass
class DecodeResult:
  tokens: jnp.ndarray  # [B, N, L] int32: generated tokens, EOS included, PAD after it
  scores: jnp.ndarray  # [B, N] float32: sequence log-prob (beam search: length-penalised)
  lengths: jnp.ndarray  # [B, N] int32: generated tokens up to and including EOS


def batch_major(cache: Cache) -> BatchAxes:
  """The default batch axes: every array holds the batch first, except 0-d arrays (a scalar has no
  batch axis: every row shares it). An array that is shared by all rows but not a scalar (e.g. a
  scanned T5's [1, layers] step count) must be declared None by its model."""
  return jax.tree_util.tree_map(lambda x: None if jnp.ndim(x) == 0 else 0, cache)


def map_batch_axis(fn: Callable[[jnp.ndarray, int], jnp.ndarray], cache: Cache,
                   batch_axes: BatchAxes | None, size: int) -> Cache:
  """`fn(array, axis)` on every cache array that has a batch axis (None: left as it is).

  Each such axis must have `size` entries (the rows the caller holds); any other size is an
  error naming the array, never a silent skip, since a skipped array would mix up rows.
  """
  if batch_axes is None:
    batch_axes = batch_major(cache)
  is_axis = lambda a: a is None  # noqa: E731  (None is a leaf here: "no batch axis")
  want = jax.tree_util.tree_structure(batch_axes, is_leaf=is_axis)
  got = jax.tree_util.tree_structure(cache)
  if want != got:
    raise ValueError(f"the cache's batch axes do not match the cache: axes for {want}, "
                     f"cache {got}")

  def one(path, axis, x):
    if axis is None:
      return x
    if not -x.ndim <= axis < x.ndim or x.shape[axis] != size:
      raise ValueError(f"cache array {jax.tree_util.keystr(path)} of shape {x.shape}: its batch "
                       f"axis {axis} should have {size} rows")
    return fn(x, axis % x.ndim)

  return jax.tree_util.tree_map_with_path(one, batch_axes, cache, is_leaf=is_axis)


def expand_batch(tree: Cache, batch_size: int, n: int,
                 batch_axes: BatchAxes | None = None) -> Cache:
  """Repeats every batch row `n` times (row b -> rows b*n .. b*n+n-1) along each array's batch
  axis (`batch_axes`: a tree like `tree` of ints, or None for arrays every row shares; default
  `batch_major`). A declared batch axis without `batch_size` rows is an error."""
  return map_batch_axis(lambda x, axis: jnp.repeat(x, n, axis=axis), tree, batch_axes,
                        batch_size)


def _decode_loop(tokens_to_logits: TokensToLogits, cache: Cache, first_tokens_B: jnp.ndarray,
                 choose: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray], *,
                 max_new_tokens: int, eos_id: int, pad_id: int, min_new_tokens: int):
  """Runs the while loop; `choose(step, logits_BV) -> tokens_B` picks each next token."""
  batch = first_tokens_B.shape[0]
  init = (
      jnp.zeros((), jnp.int32),  # step
      first_tokens_B.astype(jnp.int32),  # token fed at this step
      cache,
      jnp.full((batch, max_new_tokens), pad_id, jnp.int32),  # generated tokens
      jnp.zeros((batch,), bool),  # ended: EOS already emitted
      jnp.zeros((batch,), jnp.float32),  # sequence log-prob
      jnp.zeros((batch,), jnp.int32),  # lengths
  )

  def cond(state):
    step, _, _, _, ended, _, _ = state
    return (step < max_new_tokens) & ~jnp.all(ended)

  def body(state):
    step, token_B, cache, seq_BL, ended_B, logp_B, len_B = state
    logits_BV, cache = tokens_to_logits(token_B[:, None], cache, step)
    logits_BV = logits_BV.astype(jnp.float32)
    allowed = logits_BV
    if min_new_tokens > 0:
      too_early = (jnp.arange(logits_BV.shape[-1]) == eos_id) & (step < min_new_tokens)
      allowed = jnp.where(too_early, sampling.masked_value(jnp.float32), logits_BV)
    next_B = jnp.where(ended_B, pad_id, choose(step, allowed))
    logp_B = logp_B + jnp.where(ended_B, 0.0, sampling.token_log_probs(logits_BV, next_B))
    seq_BL = lax.dynamic_update_slice(seq_BL, next_B[:, None], (0, step))
    len_B = len_B + (~ended_B).astype(jnp.int32)
    ended_B = ended_B | (next_B == eos_id)
    return step + 1, next_B, cache, seq_BL, ended_B, logp_B, len_B

  _, _, _, seq_BL, _, logp_B, len_B = lax.while_loop(cond, body, init)
  return seq_BL, logp_B, len_B


def _check_lengths(max_new_tokens: int, min_new_tokens: int) -> None:
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if not 0 <= min_new_tokens <= max_new_tokens:
    raise ValueError(f"min_new_tokens must be in [0, max_new_tokens], got {min_new_tokens}")


def greedy_decode(tokens_to_logits: TokensToLogits, cache: Cache, first_tokens_B: jnp.ndarray, *,
                  max_new_tokens: int, eos_id: int = EOS_ID, pad_id: int = PAD_ID,
                  min_new_tokens: int = 0) -> DecodeResult:
  """Argmax decoding; `first_tokens_B` is what the model reads first (T5: 0; GPT: last prompt token).

  `min_new_tokens` forbids EOS before that many tokens (as `transformers`' `min_new_tokens`).
  """
  _check_lengths(max_new_tokens, min_new_tokens)
  seq, logp, lengths = _decode_loop(
      tokens_to_logits, cache, first_tokens_B, lambda _, logits: sampling.greedy(logits),
      max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id, min_new_tokens=min_new_tokens)
  return DecodeResult(seq[:, None], logp[:, None], lengths[:, None])


def sample_decode(tokens_to_logits: TokensToLogits, cache: Cache, first_tokens_B: jnp.ndarray,
                  rng: jax.Array, *, max_new_tokens: int, num_samples: int = 1,
                  temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  eos_id: int = EOS_ID, pad_id: int = PAD_ID,
                  min_new_tokens: int = 0,
                  cache_batch_axes: BatchAxes | None = None) -> DecodeResult:
  """Draws `num_samples` sequences per input in one loop over the expanded batch.

  The cache (and first tokens) are repeated per sample here, along `cache_batch_axes` (default
  `batch_major`), so callers build them for the plain batch. Step t uses the key `fold_in(rng, t)`: a fixed `rng` reproduces the same samples.
  """
  _check_lengths(max_new_tokens, min_new_tokens)
  if temperature <= 0:
    raise ValueError("temperature must be > 0 for sampling (use greedy_decode for argmax)")
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}")
  batch = first_tokens_B.shape[0]
  cache = expand_batch(cache, batch, num_samples, cache_batch_axes)
  first = jnp.repeat(first_tokens_B, num_samples, axis=0)

  def choose(step, logits_BV):
    return sampling.sample(jax.random.fold_in(rng, step), logits_BV, temperature=temperature,
                           top_k=top_k, top_p=top_p)

  seq, logp, lengths = _decode_loop(
      tokens_to_logits, cache, first, choose, max_new_tokens=max_new_tokens, eos_id=eos_id,
      pad_id=pad_id, min_new_tokens=min_new_tokens)
  return DecodeResult(seq.reshape(batch, num_samples, -1), logp.reshape(batch, num_samples),
                      lengths.reshape(batch, num_samples))
