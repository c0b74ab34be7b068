"""A GPT-2 style decoder-only student with T5X's decoder-only call interface.

Pre-LayerNorm blocks, learned absolute positions, tanh-GELU and an output layer tied to the token
embedding, numerically the same as Hugging Face's `GPT2LMHeadModel` (see gpt_weights.py), but
called like T5X's `examples/decoder_only` network so `t5x.models.DecoderOnlyModel(module=GPT(cfg))`
trains, evaluates and decodes it:

    logits = GPT(cfg).apply({"params": params}, decoder_input_tokens, decoder_target_tokens,
                            decoder_segment_ids, decoder_positions, decoder_causal_attention,
                            enable_dropout=False)

Our students use a T5-style vocabulary (pad 0, eos 1) and T5X's features: inputs are targets
shifted right behind an id-0 BOS, and padding is read from `decoder_target_tokens == 0`.

Decoding (collection 'cache', see layers.MultiHeadAttention): create the cache with one
`decode=True` call on a [batch, max_length] array (or `init_cache`), optionally `prefill=True`
with the prompt, then call `decode=True` with one token per example per step. A top-level
`cache_index` (same semantics as the attention ones) gives each step's position.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from kard_jax.models import layers

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  """Sizes and numerics; `dtype` is for activations, `param_dtype` for the stored weights."""

  vocab_size: int
  emb_dim: int = 768
  num_heads: int = 12
  num_layers: int = 12
  mlp_dim: int = 3072
  max_positions: int = 1024
  dropout_rate: float = 0.1  # after the embeddings and on both residual branches
  attention_dropout_rate: float = 0.1
  layer_norm_eps: float = 1e-5
  activation: str = "gelu_new"
  tie_embeddings: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    if self.emb_dim % self.num_heads:
      raise ValueError(f"emb_dim {self.emb_dim} is not divisible by num_heads {self.num_heads}")
    layers.activation(self.activation)  # fails early on an unknown name

  @property
  def head_dim(self) -> int:
    return self.emb_dim // self.num_heads


class DecoderLayer(nn.Module):
  """x + attn(ln(x)), then x + mlp(ln(x)), as GPT-2."""

  config: GPTConfig

  @nn.compact
  def __call__(self, x: Array, mask: Optional[Array], *, deterministic: bool, decode: bool,
               prefill: bool, prefill_lengths: Optional[Array]) -> Array:
    cfg = self.config
    norm = functools.partial(layers.LayerNorm, cfg.layer_norm_eps, dtype=cfg.dtype,
                             param_dtype=cfg.param_dtype)
    h = norm(name="pre_self_attention_layer_norm")(x)
    h = layers.MultiHeadAttention(
        cfg.num_heads, cfg.head_dim, dropout_rate=cfg.attention_dropout_rate, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, name="self_attention")(
            h, h, mask, deterministic=deterministic, decode=decode, prefill=prefill,
            prefill_lengths=prefill_lengths)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    h = norm(name="pre_mlp_layer_norm")(x)
    h = layers.Mlp(cfg.mlp_dim, cfg.activation, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                   name="mlp")(h)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return layers.with_sharding_constraint(x, ("batch", "length", "embed"))


class GPT(nn.Module):
  """The decoder-only network; returns float32 logits [batch, length, vocab]."""

  config: GPTConfig

  @nn.compact
  def __call__(self,
               decoder_input_tokens: Array,
               decoder_target_tokens: Optional[Array],
               decoder_segment_ids: Optional[Array] = None,
               decoder_positions: Optional[Array] = None,
               decoder_causal_attention: Optional[Array] = None,
               *,
               enable_dropout: bool = True,
               decode: bool = False,
               max_decode_length: Optional[int] = None,
               prefill: bool = False,
               prefill_lengths: Optional[Array] = None) -> Array:
    """Teacher-forced logits, or one cached decoding step.

    Args:
      decoder_input_tokens: [batch, length] int ids (targets shifted right behind id 0).
      decoder_target_tokens: [batch, length]; only `> 0` is used, to mask padding. Ignored when
        `decode=True`.
      decoder_segment_ids: [batch, length] packing ids; tokens attend within their segment.
      decoder_positions: [batch, length] positions (restarting per packed segment); default
        0..length-1, or the cache index when decoding.
      decoder_causal_attention: [batch, length], 1 on the prefix of a prefix LM (T5X's
        "inputs" plus one), which then attends bidirectionally within itself.
      enable_dropout: dropout on (needs a 'dropout' rng).
      decode: one autoregressive step on an existing cache (see the module docstring); the
        first call, on an empty cache, only creates it (full-length input, no mask).
      max_decode_length: accepted for T5X compatibility; the cache length is fixed when it is
        created.
      prefill: run the whole prompt and write its keys/values into an existing cache.
      prefill_lengths: [batch] tokens to keep per example when prefilling; default: the
        non-padding target positions. The cache index is set to these lengths.
    """
    cfg = self.config
    deterministic = not enable_dropout
    if decoder_input_tokens.ndim != 2:
      raise ValueError(f"expected [batch, length] tokens, got shape {decoder_input_tokens.shape}")
    batch, length = decoder_input_tokens.shape
    if length > cfg.max_positions:
      raise ValueError(f"sequence length {length} exceeds max_positions {cfg.max_positions}")

    mask = None
    positions = decoder_positions
    if decode:
      initialized = self.has_variable("cache", "cache_index")
      index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      if initialized:
        if positions is None:
          positions = jnp.broadcast_to(index.value.reshape(-1, 1), (batch, length))
        index.value = index.value + 1
    else:
      if decoder_target_tokens is None:
        raise ValueError("decoder_target_tokens (> 0 on real tokens) is needed unless decoding")
      mask = layers.make_decoder_mask(decoder_target_tokens, decoder_causal_attention,
                                      decoder_segment_ids)
      if prefill:
        if not self.has_variable("cache", "cache_index"):
          raise ValueError("prefill needs a cache: first call with decode=True on a "
                           "[batch, max_length] input (or use gpt.init_cache)")
        if prefill_lengths is None:
          prefill_lengths = jnp.sum(decoder_target_tokens > 0, axis=-1)
        prefill_lengths = jnp.asarray(prefill_lengths, jnp.int32)
        self.variable("cache", "cache_index").value = prefill_lengths
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))

    token_embedder = layers.Embed(cfg.vocab_size, cfg.emb_dim, ("vocab", "embed"),
                                  dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                                  name="token_embedder")
    position_embedder = layers.Embed(cfg.max_positions, cfg.emb_dim, ("abspos_buckets", "embed"),
                                     dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                                     name="position_embedder")
    y = token_embedder(decoder_input_tokens.astype(jnp.int32))
    y = y + position_embedder(positions.astype(jnp.int32))
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)

    for i in range(cfg.num_layers):
      y = DecoderLayer(cfg, name=f"layers_{i}")(
          y, mask, deterministic=deterministic, decode=decode, prefill=prefill,
          prefill_lengths=prefill_lengths)
    y = layers.LayerNorm(cfg.layer_norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                         name="decoder_norm")(y)

    if cfg.tie_embeddings:
      logits = token_embedder.attend(y)
    else:
      logits = layers.Dense(cfg.vocab_size, ("embed", "vocab"), use_bias=False,
                            dtype=jnp.float32, param_dtype=cfg.param_dtype,
                            name="logits_dense")(y)
    return layers.with_sharding_constraint(logits, ("batch", "length", "vocab"))


def cache_batch_axes(cache: Any) -> Any:
  """Each decoding-cache array's batch axis (see `decoding.decode.BatchAxes`), by variable name:
  keys and values hold the batch first ([B, T, H, D]); `cache_index` is per row ([B]) once a
  prefill set each prompt's length, and one scalar shared by every row before (None)."""
  def axis(path, x):
    name = path[-1].key if hasattr(path[-1], "key") else path[-1]
    if name in ("cached_key", "cached_value"):
      return 0
    if name == "cache_index":
      return 0 if jnp.ndim(x) == 1 else None
    raise ValueError(f"unknown GPT decoding cache variable {jax.tree_util.keystr(path)}")
  return jax.tree_util.tree_map_with_path(axis, cache)


def init_cache(config: GPTConfig, batch_size: int, max_length: int) -> dict[str, Any]:
  """A zeroed decoding cache for `batch_size` sequences of up to `max_length` tokens.

  Equivalent to T5X's cache-creating `decode=True` call, without computing a forward pass.
  """
  ids = jnp.zeros((batch_size, max_length), jnp.int32)
  shapes = jax.eval_shape(lambda: GPT(config).init(
      jax.random.PRNGKey(0), ids, ids, enable_dropout=False, decode=True))
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), dict(shapes["cache"]))
