"""Decoding our two student families: the step callbacks, their caches and the compiled entry point.

Encoder-decoder (`models.t5.Transformer`): the encoder and the cross-attention projections of its
output run once on the plain batch; they are repeated per sample/beam and held fixed by the step.
Only the self-attention cache travels through the loop (repeated per sample/beam there, and
reordered by beam search).

Decoder-only (`models.gpt.GPT`), T5X's prefix-LM layout: the model reads `[0, x_1 .. x_n]` followed
by the target, the prefix attending bidirectionally (`decoder_causal_attention`). One prefill pass
writes the keys/values of positions 0 .. n-1 and sets each row's cache index to n; decoding then
starts by feeding x_n, so rows with prompts of different lengths decode side by side.

Sharding follows training: parameters keep the shardings they were restored with (heads, mlp and
vocab over `model`), inputs are split over `data`, and the model's logical constraints resolve
through the same rules inside `nn.logical_axis_rules`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from kard_jax.decoding import beam_search as beam_lib
from kard_jax.decoding import decode as decode_lib

METHODS = ("greedy", "sample", "beam")


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
  """How to decode. `num_decodes`: samples per input for "sample", beams for "beam"."""
  method: str = "sample"
  num_decodes: int = 1
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  alpha: float = 0.6  # beam search length penalty
  max_new_tokens: int = 128
  min_new_tokens: int = 0
  eos_id: int = decode_lib.EOS_ID

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"decoding method must be one of {METHODS}, not {self.method!r}")
    if self.num_decodes < 1:
      raise ValueError(f"num_decodes must be >= 1, got {self.num_decodes}")
    if self.method == "greedy" and self.num_decodes != 1:
      raise ValueError("greedy decoding gives one output per input (num_decodes=1)")

  @property
  def outputs_per_input(self) -> int:
    return 1 if self.method == "greedy" else self.num_decodes


def run_decoder(config: DecodeConfig, tokens_to_logits: decode_lib.TokensToLogits, cache: Any,
                first_tokens_B: jax.Array, rng: jax.Array,
                cache_batch_axes: decode_lib.BatchAxes | None = None) -> decode_lib.DecodeResult:
  """Dispatches to greedy, sampling or beam search with `config`'s settings (`cache_batch_axes`:
  each cache array's batch axis, see `decode.BatchAxes`)."""
  common = dict(max_new_tokens=config.max_new_tokens, eos_id=config.eos_id,
                min_new_tokens=config.min_new_tokens)
  if config.method == "greedy":
    return decode_lib.greedy_decode(tokens_to_logits, cache, first_tokens_B, **common)
  if config.method == "beam":
    return beam_lib.beam_search(tokens_to_logits, cache, first_tokens_B,
                                beams=config.num_decodes, alpha=config.alpha,
                                cache_batch_axes=cache_batch_axes, **common)
  return decode_lib.sample_decode(tokens_to_logits, cache, first_tokens_B, rng,
                                  num_samples=config.num_decodes, temperature=config.temperature,
                                  top_k=config.top_k, top_p=config.top_p,
                                  cache_batch_axes=cache_batch_axes, **common)


_CROSS_ATTENTION = "encoder_decoder_attention"


def _split_cross_attention(cache: Any) -> tuple[dict, dict]:
  """(self-attention part, cross-attention part) of a T5 decoder cache, as flat dicts."""
  flat = traverse_util.flatten_dict(flax.core.unfreeze(cache))
  cross = {k: v for k, v in flat.items() if _CROSS_ATTENTION in k}
  return {k: v for k, v in flat.items() if _CROSS_ATTENTION not in k}, cross


def encoder_decoder_generate(module: nn.Module, params: Any, encoder_input_tokens: jax.Array,
                             rng: jax.Array, config: DecodeConfig) -> decode_lib.DecodeResult:
  """Decodes a T5 `Transformer` for [B, S] right-padded inputs; returns [B, N, max_new_tokens].

  The encoder runs once, and so does the cross-attention projection of its output: one decoder
  step on the plain batch fills that part of the cache (`models.t5` projects at a layer's first
  step and counts steps per layer), which is then repeated per sample/beam and held fixed by the
  step function. So samples and beams share one projection, and the loop carries (and beam
  search reorders) only the self-attention cache.
  """
  from kard_jax.models import t5

  batch, length = encoder_input_tokens.shape
  n = config.outputs_per_input
  encoded = module.apply({"params": params}, encoder_input_tokens, enable_dropout=False,
                         method=t5.Transformer.encode)

  def decoder_step(cache, encoded, inputs, tokens_B1):
    logits, mutated = module.apply(
        {"params": params, "cache": cache}, encoded, inputs, tokens_B1, tokens_B1,
        enable_dropout=False, decode=True, mutable=["cache"], method=t5.Transformer.decode)
    return logits[:, 0], mutated["cache"]

  cache = t5.init_decode_cache(module, batch, length, config.max_new_tokens)
  self_cache, _ = _split_cross_attention(cache)
  _, primed = decoder_step(cache, encoded, encoder_input_tokens,
                           jnp.zeros((batch, 1), jnp.int32))
  _, cross = _split_cross_attention(primed)  # projections, and each layer's step count (1)
  cross = decode_lib.expand_batch(cross, batch, n, t5.cache_batch_axes(cross))
  encoded_n = jnp.repeat(encoded, n, axis=0)  # read only at a layer's first step: unused here
  inputs_n = jnp.repeat(encoder_input_tokens, n, axis=0)

  def tokens_to_logits(tokens_B1, self_cache, step):
    del step  # the cache index knows the position
    cache = traverse_util.unflatten_dict({**self_cache, **cross})
    logits, cache = decoder_step(cache, encoded_n, inputs_n, tokens_B1)
    return logits, _split_cross_attention(cache)[0]

  first = jnp.zeros((batch,), jnp.int32)  # T5's decoder starts from id 0
  return run_decoder(config, tokens_to_logits, self_cache, first, rng,
                     t5.cache_batch_axes(self_cache))


def decoder_only_generate(module: nn.Module, params: Any, inputs: jax.Array, rng: jax.Array,
                          config: DecodeConfig) -> decode_lib.DecodeResult:
  """Decodes a GPT for [B, S] right-padded prompts (the task's `inputs`, without BOS)."""
  from kard_jax.models import gpt

  batch, length = inputs.shape
  cache_length = length + config.max_new_tokens
  if cache_length > module.config.max_positions:
    raise ValueError(f"prompt length {length} + {config.max_new_tokens} new tokens exceeds the "
                     f"model's {module.config.max_positions} positions")
  lengths = jnp.sum(inputs > 0, axis=1).astype(jnp.int32)
  prompt = jnp.concatenate([jnp.zeros((batch, 1), inputs.dtype), inputs], axis=1)
  prefix = (jnp.arange(length + 1)[None, :] <= lengths[:, None]).astype(jnp.int32)
  cache = gpt.init_cache(module.config, batch, cache_length)
  _, mutated = module.apply(
      {"params": params, "cache": cache}, prompt, prefix, decoder_causal_attention=prefix,
      enable_dropout=False, prefill=True, prefill_lengths=lengths, mutable=["cache"])
  first = jnp.take_along_axis(prompt, lengths[:, None], axis=1)[:, 0].astype(jnp.int32)

  def tokens_to_logits(tokens_B1, cache, step):
    del step  # each row's cache index gives its position
    logits, mutated = module.apply({"params": params, "cache": cache}, tokens_B1, tokens_B1,
                                   enable_dropout=False, decode=True, mutable=["cache"])
    return logits[:, 0], mutated["cache"]

  return run_decoder(config, tokens_to_logits, mutated["cache"], first, rng,
                     gpt.cache_batch_axes(mutated["cache"]))


GENERATORS: dict[str, Callable[..., decode_lib.DecodeResult]] = {
    "t5": encoder_decoder_generate,
    "gpt": decoder_only_generate,
}


def make_generate_fn(family: str, module: nn.Module, config: DecodeConfig, *,
                     mesh: Mesh | None = None, rules: Any = None,
                     param_shardings: Any = None) -> Callable[[Any, Any, jax.Array],
                                                              decode_lib.DecodeResult]:
  """A compiled `(params, inputs [B, S], rng) -> DecodeResult` for one model family.

  With a mesh, inputs are split over `data` (B must divide evenly), parameters use
  `param_shardings` (default: as they arrive), outputs come back replicated, and the model's
  logical axis names resolve through `rules`.
  """
  if family not in GENERATORS:
    raise ValueError(f"no decoder for model family {family!r} (known: {sorted(GENERATORS)})")
  generate = GENERATORS[family]

  def fn(params, inputs, rng):
    with nn.logical_axis_rules(list(rules or ())):
      return generate(module, params, inputs, rng, config)

  if mesh is None:
    return jax.jit(fn)
  jitted = jax.jit(fn, in_shardings=(param_shardings, NamedSharding(mesh, P("data")),
                                     NamedSharding(mesh, P())),
                   out_shardings=NamedSharding(mesh, P()))

  def run(params, inputs, rng):
    with jax.set_mesh(mesh):
      return jitted(params, inputs, rng)
  return run
