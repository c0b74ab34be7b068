"""The reranker's scorers: late interaction (ColBERT over BERT, KARD's default) and a cross-encoder.

Late interaction encodes the question and each passage separately, projects every token state with
a linear compressor and scores by MaxSim (`maxsim`, below). Question and passage share one BERT and
one compressor, as KARD's ColBERT does. Because the passage side is independent of the question,
its token states can be computed once and cached:

  * `train_passage_encoder=False` (the CPU default): passage token states come from the frozen
    pretrained encoder, are computed once before training and fed in the batch as
    `passage_states`; only the question encoder and the compressor learn. At inference the same
    frozen states go through the trained compressor.
  * `train_passage_encoder=True` (KARD's `update_both`): the batch carries passage token ids and
    gradients flow through both sides.

With a frozen passage side, `trainable_query_layers = n` also freezes all but the question
encoder's top n layers: the question's states after the frozen bottom layers are computed once
(like the passages') and only the top n layers and the compressor train (n = 0: the compressor
alone). Training then costs n layers instead of the whole encoder per step; KARD's code gets a
similar saving from LoRA.

The cross-encoder reads "[CLS] question [SEP] passage [SEP]" and scores with a linear head on the
[CLS] state: more accurate per pair, but nothing can be cached and every pair costs a full pass.

Parameters are {"encoder": BERT params, "compressor" | "head": Dense params}; `encoder` takes
`bert_weights.load_hf`'s tree unchanged (without its pooler), so any BERT-family checkpoint loads.

MaxSim (`maxsim`): each query token finds its best-matching passage token,
score(q, p) = sum over real query tokens i of max over real passage tokens j of <q_i, p_j>.
Dot products, not cosines, as KARD's reranker uses. Pure array functions, so the passage side can
be precomputed once and cached for inference.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from kard_jax.models import bert, layers

Array = jax.Array
KINDS = ("late_interaction", "cross_encoder")


@dataclasses.dataclass(frozen=True)
class ScorerConfig:
  """What to build around the encoder. `compression_dim` applies to late interaction only."""

  kind: str = "late_interaction"
  compression_dim: int = 128
  train_passage_encoder: bool = False
  trainable_query_layers: int | None = None  # None: the whole question encoder trains

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"unknown scorer kind {self.kind!r}; choose from {KINDS}")
    if self.compression_dim < 1:
      raise ValueError(f"compression_dim must be positive, got {self.compression_dim}")
    if self.trainable_query_layers is not None:
      if self.trainable_query_layers < 0:
        raise ValueError("trainable_query_layers must be >= 0 or None")
      if self.kind != "late_interaction" or self.train_passage_encoder:
        raise ValueError("trainable_query_layers needs late interaction with a frozen passage "
                         "encoder (train_passage_encoder=False)")
    if self.kind == "cross_encoder" and not self.train_passage_encoder:
      # A cross-encoder has no separate passage side to freeze.
      object.__setattr__(self, "train_passage_encoder", True)


def _jl_init(key, shape, dtype=jnp.float32):
  """N(0, 1/out): E[<xW, yW>] = <x, y>, so the untrained scorer is MaxSim over the encoder's own
  token states (a sensible zero-shot ranking) instead of over random directions."""
  return jax.random.normal(key, shape, dtype) / jnp.sqrt(jnp.asarray(shape[-1], dtype))


class EncoderTail(nn.Module):
  """BERT's layers `start`.. on states from its layer `start - 1`; parameters are named as in
  `bert.Bert` (`layers_<i>`), so a tail takes a slice of a full checkpoint unchanged."""

  config: bert.BertConfig
  start: int

  @nn.compact
  def __call__(self, x: Array, mask: Array, *, enable_dropout: bool = False) -> Array:
    keys = mask > 0
    attention = layers.make_attention_mask(jnp.ones_like(keys), keys)
    x = x.astype(self.config.dtype)
    for i in range(self.start, self.config.num_layers):
      x = bert.EncoderLayer(self.config, name=f"layers_{i}")(x, attention,
                                                             deterministic=not enable_dropout)
    return x


class LateInteractionScorer(nn.Module):
  """ColBERT: score(q, p) = sum_i max_j <C h_q_i, C h_p_j> over real tokens (C the compressor).

  With `query_start_layer` = s > 0 the encoder is only BERT's layers s.. (an `EncoderTail`) and
  questions arrive as states of the frozen layers below (`query_states`).
  """

  bert_config: bert.BertConfig
  compression_dim: int = 128
  query_start_layer: int = 0

  def setup(self):
    if self.query_start_layer:
      self.encoder = EncoderTail(self.bert_config, self.query_start_layer)
    else:
      self.encoder = bert.Bert(self.bert_config)
    self.compressor = layers.Dense(self.compression_dim, ("embed", "kv"),
                                   dtype=self.bert_config.dtype,
                                   param_dtype=self.bert_config.param_dtype,
                                   kernel_init=_jl_init)

  def hidden(self, ids: Array, mask: Array, *, enable_dropout: bool = False) -> Array:
    """Encoder token states [..., L, H] for ids [..., L] (any leading batch axes)."""
    lead = ids.shape[:-1]
    flat_ids, flat_mask = ids.reshape(-1, ids.shape[-1]), mask.reshape(-1, mask.shape[-1])
    h = self.encoder(flat_ids, flat_mask, enable_dropout=enable_dropout).hidden_states
    return h.reshape(lead + h.shape[1:])

  def compress(self, hidden: Array) -> Array:
    """Compressed token vectors [..., L, D] (float32) from encoder states [..., L, H]."""
    return self.compressor(hidden.astype(self.bert_config.dtype)).astype(jnp.float32)

  def encode_query(self, query: Array, mask: Array, *, enable_dropout: bool = False) -> Array:
    """Compressed question vectors from ids, or from frozen-bottom states in tail mode."""
    if self.query_start_layer:
      return self.compress(self.encoder(query, mask, enable_dropout=enable_dropout))
    return self.compress(self.hidden(query, mask, enable_dropout=enable_dropout))

  def encode_passages(self, ids: Array, mask: Array, *, enable_dropout: bool = False) -> Array:
    return self.compress(self.hidden(ids, mask, enable_dropout=enable_dropout))

  def __call__(self, query: Array, query_mask: Array, passage_mask: Array, *,
               passage_ids: Optional[Array] = None, passage_states: Optional[Array] = None,
               enable_dropout: bool = False) -> Array:
    """Scores [B, K] of K passages per question.

    Args:
      query, query_mask: [B, Q] question WordPiece ids (tail mode: [B, Q, H] states of the
        frozen bottom layers) and their mask.
      passage_mask: [B, K, P] real passage tokens.
      passage_ids: [B, K, P] ids, encoded here (gradients reach the encoder), or
      passage_states: [B, K, P, H] token states precomputed by a (frozen) encoder.
    """
    if (passage_ids is None) == (passage_states is None):
      raise ValueError("pass exactly one of passage_ids and passage_states")
    q = self.encode_query(query, query_mask, enable_dropout=enable_dropout)
    if passage_states is None:
      if self.query_start_layer:
        raise ValueError("a question-encoder tail needs precomputed passage states")
      p = self.encode_passages(passage_ids, passage_mask, enable_dropout=enable_dropout)
    else:
      p = self.compress(passage_states)
    return maxsim(q, query_mask > 0, p, passage_mask > 0)


class CrossEncoderScorer(nn.Module):
  """score(q, p) = w . h_[CLS]("[CLS] q [SEP] p [SEP]") + b."""

  bert_config: bert.BertConfig

  def setup(self):
    self.encoder = bert.Bert(self.bert_config)
    self.head = layers.Dense(1, ("embed", "kv"), dtype=self.bert_config.dtype,
                             param_dtype=self.bert_config.param_dtype)

  def __call__(self, pair_ids: Array, pair_mask: Array, pair_type_ids: Array, *,
               enable_dropout: bool = False) -> Array:
    """Scores [B, K] from [B, K, L] pair ids, mask and segment (token type) ids."""
    lead, length = pair_ids.shape[:-1], pair_ids.shape[-1]
    h = self.encoder(pair_ids.reshape(-1, length), pair_mask.reshape(-1, length),
                     pair_type_ids.reshape(-1, length),
                     enable_dropout=enable_dropout).hidden_states
    return self.head(h[:, 0]).astype(jnp.float32).reshape(lead)


def make_scorer(config: ScorerConfig, bert_config: bert.BertConfig) -> nn.Module:
  # The reranker never uses BERT's pooler; dropping it keeps unused weights out of the optimizer.
  bert_config = dataclasses.replace(bert_config, pooler=False)
  if config.kind == "late_interaction":
    start = 0
    if config.trainable_query_layers is not None:
      # n >= num_layers trains the whole question encoder, embeddings included.
      start = max(bert_config.num_layers - config.trainable_query_layers, 0)
    return LateInteractionScorer(bert_config, config.compression_dim, start)
  return CrossEncoderScorer(bert_config)


# -------------------------------------------------------------------------------------- MaxSim


_MASKED = -1e4


def maxsim(q_BxQxD, q_mask_BxQ, p_BxKxPxD, p_mask_BxKxP):
  """Scores K passages per query: returns (B, K)."""
  sim = jnp.einsum("bqd,bkpd->bkqp", q_BxQxD, p_BxKxPxD)
  sim = jnp.where(p_mask_BxKxP[:, :, None, :], sim, _MASKED)
  best = jnp.max(sim, axis=-1)  # (B, K, Q)
  best = jnp.where(q_mask_BxQ[:, None, :], best, 0.0)
  return jnp.sum(best, axis=-1)


def maxsim_shared(q_BxQxD, q_mask_BxQ, p_NxPxD, p_mask_NxP):
  """Scores every query against one shared set of N passages: returns (B, N)."""
  sim = jnp.einsum("bqd,npd->bnqp", q_BxQxD, p_NxPxD)
  sim = jnp.where(p_mask_NxP[None, :, None, :], sim, _MASKED)
  best = jnp.where(q_mask_BxQ[:, None, :], jnp.max(sim, axis=-1), 0.0)
  return jnp.sum(best, axis=-1)
