"""A BERT encoder (the reranker's backbone), numerically Hugging Face's `BertModel`.

Post-LayerNorm blocks, learned absolute positions, token-type embeddings and erf-GELU; MiniLM,
BERT and LinkBERT checkpoints all load into it (bert_weights.py). Returns the last hidden states
and, when the config asks for it, the tanh pooler over the first ([CLS]) token. Sentence
embeddings are `l2_normalize(mean_pool(hidden, mask))`, as sentence-transformers computes them.

    out = Bert(cfg).apply({"params": params}, input_ids, attention_mask, token_type_ids,
                          enable_dropout=False)
    out.hidden_states  # [batch, length, emb_dim]
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from kard_jax.models import layers

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Sizes and numerics; `dtype` is for activations, `param_dtype` for the stored weights."""

  vocab_size: int
  emb_dim: int = 768
  num_heads: int = 12
  num_layers: int = 12
  mlp_dim: int = 3072
  max_positions: int = 512
  type_vocab_size: int = 2
  dropout_rate: float = 0.1  # after the embeddings and on both residual branches
  attention_dropout_rate: float = 0.1
  layer_norm_eps: float = 1e-12
  activation: str = "gelu"
  pad_token_id: int = 0
  pooler: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    if self.emb_dim % self.num_heads:
      raise ValueError(f"emb_dim {self.emb_dim} is not divisible by num_heads {self.num_heads}")
    layers.activation(self.activation)

  @property
  def head_dim(self) -> int:
    return self.emb_dim // self.num_heads


@flax.struct.dataclass
class BertOutput:
  hidden_states: Array  # [batch, length, emb_dim], in config.dtype
  pooled: Optional[Array] = None  # [batch, emb_dim] when config.pooler


class EncoderLayer(nn.Module):
  """x = ln(x + attn(x)); x = ln(x + mlp(x)), as BERT."""

  config: BertConfig

  @nn.compact
  def __call__(self, x: Array, mask: Array, *, deterministic: bool) -> Array:
    cfg = self.config
    norm = functools.partial(layers.LayerNorm, cfg.layer_norm_eps, dtype=cfg.dtype,
                             param_dtype=cfg.param_dtype)
    dropout = nn.Dropout(cfg.dropout_rate)
    h = layers.MultiHeadAttention(
        cfg.num_heads, cfg.head_dim, dropout_rate=cfg.attention_dropout_rate, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, name="attention")(x, x, mask, deterministic=deterministic)
    x = norm(name="post_attention_layer_norm")(x + dropout(h, deterministic=deterministic))
    h = layers.Mlp(cfg.mlp_dim, cfg.activation, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                   name="mlp")(x)
    x = norm(name="post_mlp_layer_norm")(x + dropout(h, deterministic=deterministic))
    return layers.with_sharding_constraint(x, ("batch", "length", "embed"))


class Bert(nn.Module):
  """The encoder; see the module docstring."""

  config: BertConfig

  @nn.compact
  def __call__(self,
               input_ids: Array,
               attention_mask: Optional[Array] = None,
               token_type_ids: Optional[Array] = None,
               position_ids: Optional[Array] = None,
               *,
               enable_dropout: bool = True) -> BertOutput:
    """Encodes [batch, length] ids.

    Args:
      input_ids: [batch, length] WordPiece ids.
      attention_mask: [batch, length], 1 on real tokens; default `input_ids != pad_token_id`.
        Masks keys only, as Hugging Face does, so padded positions still get (unused) outputs.
      token_type_ids: [batch, length] segment (sentence A/B) ids; default 0.
      position_ids: [batch, length]; default 0..length-1.
      enable_dropout: dropout on (needs a 'dropout' rng).
    """
    cfg = self.config
    deterministic = not enable_dropout
    if input_ids.ndim != 2:
      raise ValueError(f"expected [batch, length] ids, got shape {input_ids.shape}")
    batch, length = input_ids.shape
    if length > cfg.max_positions:
      raise ValueError(f"sequence length {length} exceeds max_positions {cfg.max_positions}")
    if attention_mask is None:
      attention_mask = input_ids != cfg.pad_token_id
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    if position_ids is None:
      position_ids = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
    keys = attention_mask > 0
    mask = layers.make_attention_mask(jnp.ones_like(keys), keys)

    embed = functools.partial(layers.Embed, features=cfg.emb_dim, dtype=cfg.dtype,
                              param_dtype=cfg.param_dtype)
    x = embed(cfg.vocab_size, axes=("vocab", "embed"), name="token_embedder")(
        input_ids.astype(jnp.int32))
    x = x + embed(cfg.max_positions, axes=("abspos_buckets", "embed"),
                  name="position_embedder")(position_ids.astype(jnp.int32))
    # A handful of rows, replicated like the position table.
    x = x + embed(cfg.type_vocab_size, axes=("abspos_buckets", "embed"),
                  name="token_type_embedder")(token_type_ids.astype(jnp.int32))
    x = layers.LayerNorm(cfg.layer_norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                         name="embeddings_layer_norm")(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)

    for i in range(cfg.num_layers):
      x = EncoderLayer(cfg, name=f"layers_{i}")(x, mask, deterministic=deterministic)

    pooled = None
    if cfg.pooler:
      pooled = layers.Dense(cfg.emb_dim, ("embed", "mlp"), dtype=cfg.dtype,
                            param_dtype=cfg.param_dtype, name="pooler")(x[:, 0])
      pooled = jnp.tanh(pooled)
    return BertOutput(hidden_states=x, pooled=pooled)


def mean_pool(hidden: Array, mask: Array) -> Array:
  """Average of `hidden` [batch, length, dim] over positions where `mask` [batch, length] is set.

  Computed in float32; an all-padding row gives zeros rather than NaN.
  """
  weights = (mask > 0).astype(jnp.float32)[..., None]
  total = jnp.sum(hidden.astype(jnp.float32) * weights, axis=-2)
  return total / jnp.maximum(jnp.sum(weights, axis=-2), 1e-9)


def l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  """x / max(||x||, eps) over the last axis, like `torch.nn.functional.normalize`."""
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def sentence_embedding(hidden: Array, mask: Array) -> Array:
  """Unit-length mean-pooled embeddings, the sentence-transformers recipe for MiniLM."""
  return l2_normalize(mean_pool(hidden, mask))
