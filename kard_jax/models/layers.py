"""Blocks shared by the GPT and BERT modules, with T5X's logical axis names on every tensor.

Parameters are declared with `flax.linen.partitioning.param_with_axes`, so `init` returns a
`params_axes` collection beside `params` exactly as T5X's example layers do, and
`partitioning.standard_logical_axis_rules()` maps them onto a mesh unchanged. Activations carry
`with_sharding_constraint` hints (no-ops outside a mesh with axis rules).

Unlike T5X's example layers, dense layers have biases and attention scales queries by
head_dim**-0.5: the GPT-2 and BERT checkpoints we load were trained that way.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
from flax.linen import partitioning as nn_partitioning
import jax
import jax.numpy as jnp

param_with_axes = nn_partitioning.param_with_axes
with_sharding_constraint = nn_partitioning.with_sharding_constraint

Array = jax.Array
DType = Any
Initializer = Callable[..., Array]

# GPT-2 and BERT both initialise weights from N(0, 0.02).
default_init = nn.initializers.normal(stddev=0.02)

# Hugging Face `hidden_act` / `activation_function` names.
_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_fast": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def activation(name: str) -> Callable[[Array], Array]:
  """The activation a Hugging Face config names (`gelu` is erf GELU, `gelu_new` the tanh one)."""
  if name not in _ACTIVATIONS:
    raise ValueError(f"unsupported activation {name!r}; known: {sorted(_ACTIVATIONS)}")
  return _ACTIVATIONS[name]


# ---------------------------------------------------------------------------------------------
# Masks: boolean [batch, 1, q_length, kv_length], True where attention is allowed.
# ---------------------------------------------------------------------------------------------


def make_attention_mask(query_input: Array, key_input: Array,
                        pairwise_fn: Callable[[Array, Array], Array] = jnp.logical_and) -> Array:
  """[batch, q] and [batch, k] -> [batch, 1, q, k] by `pairwise_fn` on every (query, key) pair."""
  mask = pairwise_fn(query_input[:, :, None], key_input[:, None, :])
  return mask[:, None].astype(jnp.bool_)


def make_causal_mask(x: Array) -> Array:
  """[batch, length] -> [batch, 1, length, length], True where key position <= query position."""
  idx = jnp.broadcast_to(jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape)
  return make_attention_mask(idx, idx, jnp.greater_equal)


def combine_masks(*masks: Optional[Array]) -> Optional[Array]:
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  return functools.reduce(jnp.logical_and, masks)


def make_decoder_mask(decoder_target_tokens: Array,
                      decoder_causal_attention: Optional[Array] = None,
                      decoder_segment_ids: Optional[Array] = None) -> Array:
  """T5X's decoder-only mask: causal, padding from targets (id 0), packing, optional prefix.

  Padding is read from the targets, not the inputs, because the shifted inputs start with the
  id-0 BOS token that must stay visible. Where `decoder_causal_attention` is 1 (the prefix, the
  "inputs" of a prefix LM) tokens also see each other bidirectionally.
  """
  causal = make_causal_mask(decoder_target_tokens)
  if decoder_causal_attention is not None:
    prefix = decoder_causal_attention > 0
    causal = jnp.logical_or(causal, make_attention_mask(prefix, prefix))
  valid = decoder_target_tokens > 0
  segments = None
  if decoder_segment_ids is not None:
    segments = make_attention_mask(decoder_segment_ids, decoder_segment_ids, jnp.equal)
  return combine_masks(causal, make_attention_mask(valid, valid), segments)


# ---------------------------------------------------------------------------------------------
# Layers.
# ---------------------------------------------------------------------------------------------


class Dense(nn.Module):
  """x @ kernel (+ bias) over the last axis; the bias carries the kernel's output axis name."""

  features: int
  kernel_axes: tuple[str, str]
  use_bias: bool = True
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32
  kernel_init: Initializer = default_init

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = param_with_axes("kernel", self.kernel_init, (x.shape[-1], self.features),
                             self.param_dtype, axes=self.kernel_axes)
    y = jax.lax.dot_general(x.astype(self.dtype), kernel.astype(self.dtype),
                            (((x.ndim - 1,), (0,)), ((), ())))
    if self.use_bias:
      bias = param_with_axes("bias", nn.initializers.zeros, (self.features,), self.param_dtype,
                             axes=(self.kernel_axes[-1],))
      y = y + bias.astype(self.dtype)
    return y


class LayerNorm(nn.Module):
  """LayerNorm with scale and bias over `embed`, statistics in float32 whatever the dtype."""

  epsilon: float = 1e-5
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = x.shape[-1]
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    scale = param_with_axes("scale", nn.initializers.ones, (features,), self.param_dtype,
                            axes=("embed",))
    bias = param_with_axes("bias", nn.initializers.zeros, (features,), self.param_dtype,
                           axes=("embed",))
    y = y * scale.astype(jnp.float32) + bias.astype(jnp.float32)
    return y.astype(self.dtype)


class Embed(nn.Module):
  """A lookup table; `attend` reuses it as a tied output layer, in float32 for stable logits.

  `axes` names the table: ('vocab', 'embed') for tokens, ('abspos_buckets', 'embed') for the
  small position and token-type tables, which T5X's rules keep replicated.
  """

  num_embeddings: int
  features: int
  axes: tuple[str, str] = ("vocab", "embed")
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32
  embedding_init: Initializer = default_init

  def setup(self):
    self.embedding = param_with_axes("embedding", self.embedding_init,
                                     (self.num_embeddings, self.features), self.param_dtype,
                                     axes=self.axes)

  def __call__(self, ids: Array) -> Array:
    if not jnp.issubdtype(ids.dtype, jnp.integer):
      raise ValueError(f"embedding ids must be integers, got {ids.dtype}")
    out = jnp.take(self.embedding.astype(self.dtype), ids, axis=0, mode="clip")
    return with_sharding_constraint(out, ("batch", "length", "embed"))

  def attend(self, query: Array) -> Array:
    return jnp.dot(query.astype(jnp.float32), self.embedding.astype(jnp.float32).T)


class Mlp(nn.Module):
  """wi (embed -> mlp), activation, wo (mlp -> embed); dropout is left to the caller."""

  mlp_dim: int
  activation: str
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype)
    h = dense(self.mlp_dim, ("embed", "mlp"), name="wi")(x)
    h = activation(self.activation)(h)
    h = with_sharding_constraint(h, ("batch", "length", "mlp"))
    return dense(x.shape[-1], ("mlp", "embed"), name="wo")(h)


def dot_product_attention(query: Array, key: Array, value: Array, mask: Optional[Array], *,
                          dropout_rate: float = 0.0, dropout_rng: Optional[Array] = None,
                          dtype: DType = jnp.float32) -> Array:
  """softmax(q k^T + mask) v with [batch, length, heads, kv] tensors; softmax in float32."""
  logits = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(logits, axis=-1)
  if dropout_rng is not None and dropout_rate > 0.0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  return jnp.einsum("bhqk,bkhd->bqhd", weights.astype(dtype), value.astype(dtype))


class MultiHeadAttention(nn.Module):
  """Multi-head attention with biased q/k/v/out projections and an optional decoding cache.

  Cache (collection 'cache', created by the first call with `decode=True`, whose input length
  sets the cache length): `cached_key`, `cached_value` [batch, length, heads, kv] and
  `cache_index`, a scalar or [batch] int32 giving the next position to fill.
  - `decode=True` on an existing cache: one token per example; writes its key/value at
    `cache_index`, attends to positions <= `cache_index`, then increments it.
  - `prefill=True` (with `decode=False`): a normal forward pass with `mask`, which also writes the
    first `prefill_lengths[b]` keys/values of each example and sets `cache_index` to them.
  """

  num_heads: int
  head_dim: int
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Optional[Array] = None, *,
               deterministic: bool = True, decode: bool = False, prefill: bool = False,
               prefill_lengths: Optional[Array] = None) -> Array:
    if prefill and decode:
      raise ValueError("prefill and decode are exclusive: prefill first, then decode steps")
    dense = functools.partial(Dense, self.num_heads * self.head_dim, ("embed", "joined_kv"),
                              dtype=self.dtype, param_dtype=self.param_dtype)
    heads = lambda x: x.reshape(x.shape[:-1] + (self.num_heads, self.head_dim))
    query = heads(dense(name="query")(inputs_q)) * jnp.asarray(self.head_dim ** -0.5, self.dtype)
    key = heads(dense(name="key")(inputs_kv))
    value = heads(dense(name="value")(inputs_kv))
    query = with_sharding_constraint(query, ("batch", "length", "heads", "kv"))
    key = with_sharding_constraint(key, ("batch", "length", "heads", "kv"))
    value = with_sharding_constraint(value, ("batch", "length", "heads", "kv"))

    if decode or prefill:
      initialized = self.has_variable("cache", "cached_key")
      if prefill and not initialized:
        raise ValueError("prefill needs a cache: first call with decode=True on a "
                         "[batch, max_length] input (or use gpt.init_cache)")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
      cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      if initialized:
        length = cached_key.value.shape[1]
        positions = jnp.arange(length, dtype=jnp.int32)
        if prefill:
          lengths = jnp.asarray(prefill_lengths, jnp.int32).reshape(-1)
          keep = (positions[None, :] < lengths[:, None])[:, :, None, None]
          pad = [(0, 0), (0, length - key.shape[1]), (0, 0), (0, 0)]
          cached_key.value = jnp.where(keep, jnp.pad(key, pad), 0).astype(cached_key.value.dtype)
          cached_value.value = jnp.where(keep, jnp.pad(value, pad),
                                         0).astype(cached_value.value.dtype)
          cache_index.value = lengths
        else:
          expected = cached_key.value.shape[:1] + (1,) + cached_key.value.shape[2:]
          if query.shape != expected:
            raise ValueError(f"decoding feeds one token per step: expected query shape {expected}, "
                             f"got {query.shape}")
          index = cache_index.value.reshape(-1)  # [1] or [batch]
          # Each row writes its one position (a scatter, not a select over the whole cache);
          # a row already at the end of the cache writes nothing.
          rows = jnp.arange(key.shape[0])
          at = jnp.broadcast_to(index, rows.shape)
          key = cached_key.value.at[rows, at].set(
              key[:, 0].astype(cached_key.value.dtype), mode="drop")
          value = cached_value.value.at[rows, at].set(
              value[:, 0].astype(cached_value.value.dtype), mode="drop")
          cached_key.value, cached_value.value = key, value
          cache_index.value = cache_index.value + 1
          seen = (positions[None, :] <= index[:, None])[:, None, None, :]  # [b, 1, 1, length]
          mask = combine_masks(mask, seen)

    dropout_rng = None
    if not deterministic and self.dropout_rate > 0.0:
      dropout_rng = self.make_rng("dropout")
    x = dot_product_attention(query, key, value, mask, dropout_rate=self.dropout_rate,
                              dropout_rng=dropout_rng, dtype=self.dtype)
    x = x.reshape(x.shape[:-2] + (self.num_heads * self.head_dim,))
    x = with_sharding_constraint(x, ("batch", "length", "joined_kv"))
    return Dense(inputs_q.shape[-1], ("joined_kv", "embed"), dtype=self.dtype,
                 param_dtype=self.param_dtype, name="out")(x)

