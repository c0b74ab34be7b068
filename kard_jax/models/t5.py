"""T5 encoder-decoder in Flax linen: T5 v1.1 / Flan-T5 and the original T5, with T5X's interface.

`Transformer` has the call interface of T5X's example network (`encode`, `decode`, `__call__` with
`encoder_input_tokens`, `decoder_input_tokens`, `decoder_target_tokens`, segment ids, `enable_dropout`,
`decode`), so `t5x.models.EncoderDecoderModel(module=Transformer(config), ...)` trains it. Every
parameter declares T5X's logical axis names in a `params_axes` collection beside `params` (as T5X's
example layers do) and activations carry them as sharding constraints, so
`standard_logical_axis_rules()` shards it unchanged.

Numerics follow the Hugging Face reference (`T5ForConditionalGeneration`) exactly: RMS norm without
mean subtraction, unscaled dot-product attention with a bucketed relative position bias computed once per
stack, gated-GELU (tanh approximation) or ReLU feed-forward, logits in float32.

Cached decoding (`decode=True`), the protocol the decoders rely on:
  1. Make the cache: `init_decode_cache(model, batch, encoder_length, max_decode_length)` (zeros, no
     parameters allocated), or equivalently `model.init(rng, enc[B,S], dec[B,T], dec[B,T], decode=True,
     enable_dropout=False)["cache"]` with T = the maximum decode length.
  2. Step: `logits, mut = model.apply({"params": p, "cache": cache}, encoded, enc, tok[B,1], tok[B,1],
     enable_dropout=False, decode=True, mutable=["cache"], method=Transformer.decode)`, then
     `cache = mut["cache"]`. Step i feeds the token at decoder position i (0 first) and returns the logits
     [B, 1, V] for position i.
  Per decoder layer the cache holds `self_attention/{cached_key, cached_value}` [B, heads, T, head_dim],
  `encoder_decoder_attention/{cached_key, cached_value}` [B, heads, S, head_dim] (the encoder output's
  projections, computed at step 0 and reused, so later steps never touch `encoded`), and int32 scalars
  `cache_index` (steps taken). Every array but the scalars is batch-major, so beams and samples are
  tiled or gathered along axis 0.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import flax.linen as nn
from flax.linen import partitioning as nn_partitioning
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
_NEG_INF = -1e10  # T5X's masking value: large enough, and finite so fully masked rows stay finite.

# Sizes of the released checkpoints (T5 v1.1 and Flan-T5 share them). Vocabulary: 32,128 rows.
FLAN_T5_SIZES: dict[str, dict[str, int]] = {
    "small": dict(d_model=512, num_heads=6, head_dim=64, num_encoder_layers=8, num_decoder_layers=8,
                  d_ff=1024),
    "base": dict(d_model=768, num_heads=12, head_dim=64, num_encoder_layers=12,
                 num_decoder_layers=12, d_ff=2048),
    "large": dict(d_model=1024, num_heads=16, head_dim=64, num_encoder_layers=24,
                  num_decoder_layers=24, d_ff=2816),
    "xl": dict(d_model=2048, num_heads=32, head_dim=64, num_encoder_layers=24,
               num_decoder_layers=24, d_ff=5120),
}


# remat policy name -> what the backward pass may keep from the forward pass (None: no remat).
REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
}


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Hyperparameters. Field names follow Hugging Face's T5Config where one exists (d_kv -> head_dim).

  `tie_word_embeddings`: logits come from the shared embedding (original T5) instead of a separate
  `logits_dense` kernel (v1.1). `scale_decoder_outputs`: multiply the decoder output by d_model**-0.5
  before the logits; None means "same as tie_word_embeddings" (true for both released families).
  `dtype` is the activation dtype, `param_dtype` the storage dtype of parameters (either may be a
  string such as "bfloat16"): mixed precision as T5X runs it is dtype="bfloat16" over the default
  float32 parameters (and so float32 optimizer state), with float32 logits and loss.
  `remat`: "none", "full" (recompute each layer in the backward pass) or "dots_saveable" (keep matmul
  outputs, recompute the rest; "dots" is the same). `scan_layers`: each stack is one `nn.scan` over
  its layers, their parameters stacked on a leading `layers` axis (`encoder/layers/...`, T5X's
  scan_layers) instead of `layers_0` .. `layers_{n-1}`: one layer is compiled per stack, however
  deep. `stack_layers` / `unstack_layers` convert parameter trees between the two layouts.
  """
  vocab_size: int = 32128
  d_model: int = 512
  num_heads: int = 6
  head_dim: int = 64
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  d_ff: int = 1024
  dropout_rate: float = 0.1
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  feed_forward: str = "gated-gelu"
  tie_word_embeddings: bool = False
  scale_decoder_outputs: bool | None = None
  layer_norm_epsilon: float = 1e-6
  dtype: Any = "float32"
  param_dtype: Any = "float32"
  remat: str = "none"
  scan_layers: bool = False

  def __post_init__(self):
    if self.feed_forward not in ("gated-gelu", "relu"):
      raise ValueError(f"feed_forward must be 'gated-gelu' or 'relu', not {self.feed_forward!r}")
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"remat must be one of {sorted(REMAT_POLICIES)}, not {self.remat!r}")

  @property
  def scales_decoder_outputs(self) -> bool:
    if self.scale_decoder_outputs is None:
      return self.tie_word_embeddings
    return self.scale_decoder_outputs

  @property
  def activation_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def storage_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)

  @classmethod
  def flan_t5(cls, size: str, **overrides) -> "T5Config":
    """Flan-T5 / T5 v1.1 of a released size ("small", "base", "large", "xl")."""
    if size not in FLAN_T5_SIZES:
      raise ValueError(f"unknown Flan-T5 size {size!r}; choose from {sorted(FLAN_T5_SIZES)}")
    return cls(**{**FLAN_T5_SIZES[size], **overrides})

  @classmethod
  def original_t5_small(cls, **overrides) -> "T5Config":
    """The original t5-small: ReLU feed-forward, logits through the scaled shared embedding."""
    return cls(**{**dict(d_model=512, num_heads=8, head_dim=64, num_encoder_layers=6,
                         num_decoder_layers=6, d_ff=2048, feed_forward="relu",
                         tie_word_embeddings=True), **overrides})

  @classmethod
  def tiny(cls, **overrides) -> "T5Config":
    """A ~0.3M-parameter model for tests and smoke runs."""
    return cls(**{**dict(vocab_size=128, d_model=64, num_heads=4, head_dim=16,
                         num_encoder_layers=2, num_decoder_layers=2, d_ff=128), **overrides})


def _param(module: nn.Module, name: str, init, shape, axes: tuple[str, ...], cfg: T5Config):
  """A parameter whose logical axes go to the `params_axes` collection, as T5X's layers do."""
  return nn_partitioning.param_with_axes(name, init, shape, cfg.storage_dtype, axes=axes,
                                         module=module)


class Dense(nn.Module):
  """Bias-free projection of the last axis, kernel [in, out] named by two logical axes."""
  config: T5Config
  features: int
  axes: tuple[str, str]
  kernel_init: Any = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
  dtype: Any = None  # None: the config's activation dtype

  @nn.compact
  def __call__(self, x: Array) -> Array:
    dtype = self.config.activation_dtype if self.dtype is None else self.dtype
    kernel = _param(self, "kernel", self.kernel_init, (x.shape[-1], self.features), self.axes,
                    self.config)
    return jnp.einsum("...i,io->...o", x.astype(dtype), kernel.astype(dtype))


class RMSNorm(nn.Module):
  """T5's layer norm: x / rms(x) * scale, statistics in float32, no bias, no mean subtraction."""
  config: T5Config

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.config
    scale = _param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",), cfg)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + cfg.layer_norm_epsilon)
    return x32.astype(cfg.activation_dtype) * scale.astype(cfg.activation_dtype)


class Embed(nn.Module):
  """The shared token embedding [vocab, embed]; `attend` gives logits through its transpose."""
  config: T5Config

  def setup(self):
    cfg = self.config
    self.embedding = _param(self, "embedding", nn.initializers.normal(stddev=1.0),
                            (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), cfg)

  def __call__(self, tokens: Array) -> Array:
    x = jnp.take(self.embedding, tokens.astype(jnp.int32), axis=0)
    return x.astype(self.config.activation_dtype)

  def attend(self, y: Array) -> Array:
    return jnp.einsum("...d,vd->...v", y.astype(jnp.float32), self.embedding.astype(jnp.float32))


def relative_position_bucket(relative_position: Array, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Array:
  """T5's bucketing of (key - query) offsets: exact for small offsets, log-spaced up to max_distance."""
  buckets = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    buckets = buckets + (relative_position > 0).astype(relative_position.dtype) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  log_ratio = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
               / np.log(max_distance / max_exact) * (num_buckets - max_exact))
  large = jnp.minimum(max_exact + log_ratio.astype(relative_position.dtype), num_buckets - 1)
  return buckets + jnp.where(is_small, distance, large)


class RelativePositionBias(nn.Module):
  """Learned per-head bias indexed by the bucket of (key position - query position)."""
  config: T5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, query_positions: Array, key_positions: Array) -> Array:
    """[Q], [K] int positions -> bias [1, heads, Q, K]."""
    cfg = self.config
    table = _param(self, "rel_embedding",
                   nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
                   (cfg.num_heads, cfg.relative_attention_num_buckets), ("heads", "relpos_buckets"),
                   cfg)
    offsets = key_positions[None, :].astype(jnp.int32) - query_positions[:, None].astype(jnp.int32)
    buckets = relative_position_bucket(offsets, self.bidirectional,
                                       cfg.relative_attention_num_buckets,
                                       cfg.relative_attention_max_distance)
    return jnp.take(table.astype(cfg.activation_dtype), buckets, axis=1)[None]


class MultiHeadAttention(nn.Module):
  """T5 attention (no 1/sqrt(d) scaling: it is folded into the query initialiser, as in T5X).

  `decode=True` without a cache only creates one (zeros). With a cache, `inputs_q` is one step
  [B, 1, d]. Self-attention writes that step's key and value at `cache_index` and attends to positions
  <= `cache_index`. Cross-attention (`cross=True`) projects the encoder output into keys and values
  at the first step only and reads them from the cache afterwards.
  """
  config: T5Config
  cross: bool = False

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Array | None = None,
               bias: Array | None = None, *, decode: bool = False,
               deterministic: bool = True) -> Array:
    cfg = self.config
    heads, head_dim = cfg.num_heads, cfg.head_dim
    base_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    query_init = lambda *a: base_init(*a) / float(np.sqrt(head_dim))

    def project(name, init, x):
      y = Dense(cfg, heads * head_dim, ("embed", "joined_kv"), kernel_init=init, name=name)(x)
      y = y.reshape(x.shape[:-1] + (heads, head_dim))
      return nn.with_logical_constraint(y, ("batch", "length", "heads", "kv"))

    project_kv = lambda module, x: (project("key", base_init, x), project("value", base_init, x))
    query = project("query", query_init, inputs_q)
    initialized = decode and self.has_variable("cache", "cached_key")
    if not initialized:
      key, value = project_kv(self, inputs_kv)
    if decode:
      # Heads-major [B, H, L, D], the layout the step's einsums read without a transpose.
      shape = (inputs_kv.shape[0], heads, inputs_kv.shape[1], head_dim)
      cached_key = self.variable("cache", "cached_key", jnp.zeros, shape, cfg.activation_dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, shape, cfg.activation_dtype)
      # Scanned stacks hold the index as [1] so the stacked cache stays batch-major ([1, layers]).
      index_shape = (1,) if cfg.scan_layers else ()
      cache_index = self.variable("cache", "cache_index",
                                  lambda: jnp.zeros(index_shape, jnp.int32))
    if not initialized:
      logits = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
    else:
      batch, _, length, _ = cached_key.value.shape
      if query.shape != (batch, 1, heads, head_dim):
        raise ValueError(f"cached decoding takes one token per step for a batch of {batch}; "
                         f"got a query of shape {query.shape[:2]}")
      index = jnp.reshape(cache_index.value, (-1,))[0]  # rows of a repeated index are equal
      heads_major = lambda t: jnp.swapaxes(t, 1, 2)  # [B, L, H, D] -> [B, H, L, D]
      if self.cross:
        project_hm = lambda module, x: tuple(heads_major(t) for t in project_kv(module, x))
        key, value = nn.cond(index == 0, project_hm,
                             lambda module, x: (cached_key.value, cached_value.value),
                             self, inputs_kv)
      else:
        key, value = project_kv(self, inputs_kv)
        key = jax.lax.dynamic_update_slice(cached_key.value, heads_major(key), (0, 0, index, 0))
        value = jax.lax.dynamic_update_slice(cached_value.value, heads_major(value),
                                             (0, 0, index, 0))
        seen = (jnp.arange(length) <= index)[None, None, None, :]
        mask = seen if mask is None else jnp.logical_and(mask, seen)
      cached_key.value, cached_value.value = key, value
      cache_index.value = cache_index.value + 1
      logits = jnp.einsum("bqhd,bhkd->bhqk", query, key, preferred_element_type=jnp.float32)

    if bias is not None:
      logits = logits + bias.astype(jnp.float32)
    if mask is not None:
      logits = jnp.where(mask, logits, _NEG_INF)
    weights = jax.nn.softmax(logits, axis=-1).astype(cfg.activation_dtype)
    weights = nn.Dropout(cfg.dropout_rate)(weights, deterministic=deterministic)
    kv_layout = "bhkd" if initialized else "bkhd"
    out = jnp.einsum(f"bhqk,{kv_layout}->bqhd", weights, value)
    out = out.reshape(out.shape[:2] + (heads * head_dim,))
    return Dense(cfg, inputs_q.shape[-1], ("joined_kv", "embed"), kernel_init=base_init,
                 name="out")(out)


class MlpBlock(nn.Module):
  """Feed-forward: gelu_tanh(x wi_0) * (x wi_1) for gated-gelu, relu(x wi) for relu; then wo."""
  config: T5Config

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True) -> Array:
    cfg = self.config
    dense = functools.partial(Dense, cfg, cfg.d_ff, ("embed", "mlp"))
    if cfg.feed_forward == "gated-gelu":
      h = jax.nn.gelu(dense(name="wi_0")(x), approximate=True) * dense(name="wi_1")(x)
    else:
      h = jax.nn.relu(dense(name="wi")(x))
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return Dense(cfg, x.shape[-1], ("mlp", "embed"), name="wo")(h)


class EncoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x, mask, bias, deterministic):
    cfg = self.config
    drop = lambda y: nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    h = RMSNorm(cfg, name="pre_attention_layer_norm")(x)
    x = x + drop(MultiHeadAttention(cfg, name="attention")(h, h, mask, bias,
                                                           deterministic=deterministic))
    h = RMSNorm(cfg, name="pre_mlp_layer_norm")(x)
    x = x + drop(MlpBlock(cfg, name="mlp")(h, deterministic))
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    return (x, None) if cfg.scan_layers else x


class DecoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, y, encoded, decoder_mask, encoder_decoder_mask, bias, deterministic, decode):
    cfg = self.config
    drop = lambda z: nn.Dropout(cfg.dropout_rate)(z, deterministic=deterministic)
    h = RMSNorm(cfg, name="pre_self_attention_layer_norm")(y)
    y = y + drop(MultiHeadAttention(cfg, name="self_attention")(
        h, h, decoder_mask, bias, decode=decode, deterministic=deterministic))
    h = RMSNorm(cfg, name="pre_cross_attention_layer_norm")(y)
    y = y + drop(MultiHeadAttention(cfg, cross=True, name="encoder_decoder_attention")(
        h, encoded, encoder_decoder_mask, decode=decode, deterministic=deterministic))
    h = RMSNorm(cfg, name="pre_mlp_layer_norm")(y)
    y = y + drop(MlpBlock(cfg, name="mlp")(h, deterministic))
    y = nn.with_logical_constraint(y, ("batch", "length", "embed"))
    return (y, None) if cfg.scan_layers else y


def _maybe_remat(layer_cls, cfg: T5Config, static_argnums: tuple[int, ...]):
  """`static_argnums` count `self` as 0 and name the Python-bool arguments (deterministic, decode)."""
  policy = REMAT_POLICIES[cfg.remat]
  if policy is None:
    return layer_cls
  # Inside a scan the loop already keeps XLA from merging recomputation with the forward pass.
  return nn.remat(layer_cls, policy=policy, static_argnums=static_argnums,
                  prevent_cse=not cfg.scan_layers)


def _run_stack(module: nn.Module, layer_cls, cfg: T5Config, num_layers: int, x, args,
               variable_axes: dict[str, int]):
  """`num_layers` layers on x: unrolled (`layers_{i}`), or one `nn.scan` named `layers`."""
  if not cfg.scan_layers:
    for i in range(num_layers):
      x = layer_cls(cfg, name=f"layers_{i}", parent=module)(x, *args)
    return x
  scanned = nn_partitioning.scan_with_axes(
      layer_cls, variable_axes=variable_axes, split_rngs={"params": True, "dropout": True},
      in_axes=(nn.broadcast,) * len(args), length=num_layers, axis_name="layers")
  x, _ = scanned(cfg, name="layers", parent=module)(x, *args)
  return x


class Encoder(nn.Module):
  config: T5Config
  shared_embedding: Embed

  @nn.compact
  def __call__(self, encoder_input_tokens, encoder_mask=None, deterministic=True):
    cfg = self.config
    positions = jnp.arange(encoder_input_tokens.shape[-1])
    bias = RelativePositionBias(cfg, bidirectional=True, name="relpos_bias")(positions, positions)
    x = self.shared_embedding(encoder_input_tokens)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    layer = _maybe_remat(EncoderLayer, cfg, static_argnums=(4,))
    x = _run_stack(self, layer, cfg, cfg.num_encoder_layers, x,
                   (encoder_mask, bias, deterministic), {"params": 0})
    x = RMSNorm(cfg, name="encoder_norm")(x)
    return nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
  config: T5Config
  shared_embedding: Embed

  @nn.compact
  def __call__(self, encoded, decoder_input_tokens, decoder_mask=None, encoder_decoder_mask=None,
               deterministic=True, decode=False):
    cfg = self.config
    relpos = RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")
    first = "layers" if cfg.scan_layers else "layers_0"
    step_cache = self.variables.get("cache", {}).get(first, {}).get("self_attention", {})
    if decode and "cached_key" in step_cache:
      # One step: the bias row of query position `cache_index` against every cached position
      # (cached keys [B, H, T, D], or [B, layers, H, T, D] scanned).
      index = jnp.reshape(step_cache["cache_index"], (-1,))[:1]
      bias = relpos(index, jnp.arange(step_cache["cached_key"].shape[-2]))
    else:
      positions = jnp.arange(decoder_input_tokens.shape[-1])
      bias = relpos(positions, positions)

    y = self.shared_embedding(decoder_input_tokens)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    y = nn.with_logical_constraint(y, ("batch", "length", "embed"))
    layer = _maybe_remat(DecoderLayer, cfg, static_argnums=(6, 7))
    # A scanned decoder's cache is stacked on axis 1, keeping it batch-major for the decoders.
    y = _run_stack(self, layer, cfg, cfg.num_decoder_layers, y,
                   (encoded, decoder_mask, encoder_decoder_mask, bias, deterministic, decode),
                   {"params": 0, "cache": 1})
    y = RMSNorm(cfg, name="decoder_norm")(y)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)

    if cfg.scales_decoder_outputs:
      y = y * (cfg.d_model ** -0.5)
    if cfg.tie_word_embeddings:
      logits = self.shared_embedding.attend(y)
    else:
      logits = Dense(cfg, cfg.vocab_size, ("embed", "vocab"), dtype=jnp.float32,
                     name="logits_dense")(y)
    return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


def _pair_mask(query_valid: Array, key_valid: Array) -> Array:
  """[B, Q], [B, K] bool -> [B, 1, Q, K]: the query may attend to the key."""
  return jnp.logical_and(query_valid[:, None, :, None], key_valid[:, None, None, :])


def _same_segment(query_segments: Array, key_segments: Array) -> Array:
  return query_segments[:, None, :, None] == key_segments[:, None, None, :]


class Transformer(nn.Module):
  """The encoder-decoder. Token id 0 is padding; positions with segment id 0 are padding in packed rows.

  `encoder_positions`/`decoder_positions` are accepted for T5X compatibility and not needed: relative
  offsets inside a packed segment equal those of the unpacked example, and cross-segment attention is
  masked.
  """
  config: T5Config

  def setup(self):
    self.token_embedder = Embed(self.config)
    self.encoder = Encoder(self.config, self.token_embedder)
    self.decoder = Decoder(self.config, self.token_embedder)

  def encode(self, encoder_input_tokens, encoder_segment_ids=None, enable_dropout=True):
    """[B, S] tokens -> encoded [B, S, d_model]."""
    valid = encoder_input_tokens > 0
    mask = _pair_mask(valid, valid)
    if encoder_segment_ids is not None:
      mask = jnp.logical_and(mask, _same_segment(encoder_segment_ids, encoder_segment_ids))
    return self.encoder(encoder_input_tokens, mask, deterministic=not enable_dropout)

  def decode(self, encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
             encoder_segment_ids=None, decoder_segment_ids=None, decoder_positions=None,
             enable_dropout=True, decode=False, max_decode_length=None):
    """Logits [B, T, vocab] (float32) for the decoder inputs, attending to `encoded`.

    With decode=True the decoder self-attention uses the `cache` collection (see the module
    docstring); `max_decode_length` is accepted for T5X compatibility (the cache knows its length).
    """
    del decoder_positions, max_decode_length
    encoder_valid = encoder_input_tokens > 0
    if decode:
      if encoder_segment_ids is not None or decoder_segment_ids is not None:
        raise ValueError("packed inputs (segment ids) cannot be used with cached decoding")
      decoder_mask = None  # the cache masks positions not yet decoded
      encoder_decoder_mask = _pair_mask(jnp.ones_like(decoder_target_tokens, bool), encoder_valid)
    else:
      target_valid = decoder_target_tokens > 0
      length = decoder_target_tokens.shape[-1]
      causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
      decoder_mask = jnp.logical_and(_pair_mask(target_valid, target_valid), causal)
      encoder_decoder_mask = _pair_mask(target_valid, encoder_valid)
      if decoder_segment_ids is not None:
        decoder_mask = jnp.logical_and(
            decoder_mask, _same_segment(decoder_segment_ids, decoder_segment_ids))
      if encoder_segment_ids is not None:
        if decoder_segment_ids is None:
          raise ValueError("encoder_segment_ids given without decoder_segment_ids")
        encoder_decoder_mask = jnp.logical_and(
            encoder_decoder_mask, _same_segment(decoder_segment_ids, encoder_segment_ids))
    return self.decoder(encoded, decoder_input_tokens, decoder_mask, encoder_decoder_mask,
                        deterministic=not enable_dropout, decode=decode)

  def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
               encoder_segment_ids=None, decoder_segment_ids=None, encoder_positions=None,
               decoder_positions=None, *, enable_dropout: bool = True, decode: bool = False):
    """Logits [B, T, vocab] (float32). `decoder_input_tokens` are the targets shifted right."""
    del encoder_positions
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids=encoder_segment_ids,
                          enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                       encoder_segment_ids=encoder_segment_ids,
                       decoder_segment_ids=decoder_segment_ids,
                       decoder_positions=decoder_positions, enable_dropout=enable_dropout,
                       decode=decode)


def dummy_inputs(batch_size: int, encoder_length: int, decoder_length: int):
  """(encoder_input_tokens, decoder_input_tokens, decoder_target_tokens) of ones, for `init`."""
  enc = jnp.ones((batch_size, encoder_length), jnp.int32)
  dec = jnp.ones((batch_size, decoder_length), jnp.int32)
  return enc, dec, dec


def init_variables(model: Transformer, rng: Array, encoder_length: int = 8,
                   decoder_length: int = 8) -> dict[str, Any]:
  """{"params": random parameters, "params_axes": their logical axes}; jit-compiled."""
  init = jax.jit(functools.partial(model.init, enable_dropout=False))
  return dict(init(rng, *dummy_inputs(1, encoder_length, decoder_length)))


def init_params(model: Transformer, rng: Array, encoder_length: int = 8, decoder_length: int = 8):
  """Random parameters: a plain tree of arrays (the model's `params` collection)."""
  return init_variables(model, rng, encoder_length, decoder_length)["params"]


def logical_axes(model: Transformer) -> Any:
  """Each parameter's logical `PartitionSpec` (e.g. P('embed', 'mlp')), for sharding rules."""
  abstract = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), 2, 2))
  return flax.core.unfreeze(nn_partitioning.get_axis_names(abstract["params_axes"]))


def init_decode_cache(model: Transformer, batch_size: int, encoder_length: int,
                      max_decode_length: int) -> Any:
  """The zero `cache` collection for decoding up to `max_decode_length` tokens (no parameters made)."""
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0),
                         *dummy_inputs(batch_size, encoder_length, max_decode_length),
                         enable_dropout=False, decode=True)["cache"])
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def cache_batch_axes(cache: Any) -> Any:
  """Each decoding-cache array's batch axis (see `decoding.decode.BatchAxes`), by variable name:
  keys and values hold the batch first ([B, H, T, D]; scanned [B, layers, H, T, D]), and
  `cache_index` is one step count shared by every row (a scalar; scanned [1, layers]): None.
  Works on the nested cache and on a flattened one keyed by path tuples."""
  def axis(path, _):
    key = path[-1].key if hasattr(path[-1], "key") else path[-1]
    name = key[-1] if isinstance(key, tuple) else key
    if name in ("cached_key", "cached_value"):
      return 0
    if name == "cache_index":
      return None
    raise ValueError(f"unknown T5 decoding cache variable {jax.tree_util.keystr(path)}")
  return jax.tree_util.tree_map_with_path(axis, cache)


_STACKS = (("encoder", "num_encoder_layers"), ("decoder", "num_decoder_layers"))


def stack_layers(params: Any, cfg: T5Config) -> Any:
  """An unrolled parameter tree (`layers_0` ..) -> the scanned layout (`layers`, leading axis)."""
  out = dict(params)
  for stack, count in _STACKS:
    tree = dict(params[stack])
    layers = [tree.pop(f"layers_{i}") for i in range(getattr(cfg, count))]
    extra = [k for k in tree if k.startswith("layers_")]
    if extra:
      raise ValueError(f"{stack} has {extra[0]} beyond its {getattr(cfg, count)} layers")
    tree["layers"] = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *layers)
    out[stack] = tree
  return out


def unstack_layers(params: Any, cfg: T5Config) -> Any:
  """The scanned layout (`layers`, leading axis) -> an unrolled tree (`layers_0` ..)."""
  out = dict(params)
  for stack, count in _STACKS:
    tree = dict(params[stack])
    stacked = tree.pop("layers")
    for i in range(getattr(cfg, count)):
      tree[f"layers_{i}"] = jax.tree.map(lambda x, i=i: np.asarray(x)[i], stacked)
    out[stack] = tree
  return out


def is_scanned(params: Any) -> bool:
  """Whether a parameter tree has the scanned layout."""
  return "layers" in params["encoder"]
