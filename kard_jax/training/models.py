"""T5X-style model wrappers: a Flax module plus its loss, evaluation and parameter initialisation.

The trainer only talks to `BaseModel`; anything that implements it (the encoder-decoder and
decoder-only students here, the passage reranker elsewhere) trains with the same sharded, resumable
loop.

Metric conventions shared by every model:
  * `loss_fn` returns (loss, metrics). `metrics["loss_denominator"]` is what the summed loss was
    divided by (e.g. the number of real target tokens); keys starting with `num_` are counts. Both
    add up across micro-batches; every other metric is a mean that is combined weighted by
    `loss_denominator`. This is what makes gradient accumulation equal to one large batch (a model
    whose denominator is a constant says so with `loss_denominator_is_additive = False`, and cannot
    accumulate).
  * `eval_fn` returns {name: (numerator, denominator)}; an evaluation sums both over its batches and
    reports numerator / denominator.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import seqio

from kard_jax.models.params_io import config_to_dict
from kard_jax.training import losses

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]
DENOMINATOR = "loss_denominator"


def is_count_metric(name: str) -> bool:
  """Counts add up across micro-batches and steps; every other metric is a mean."""
  return name == DENOMINATOR or name.startswith("num_")


class BaseModel(abc.ABC):
  """What the trainer needs from a model (T5X's BaseModel, without decoding)."""

  # The SeqIO feature converter whose output `loss_fn` reads; None for models with their own input.
  FEATURE_CONVERTER_CLS: type[seqio.FeatureConverter] | None = None

  @abc.abstractmethod
  def get_initial_variables(self, rng: jax.Array, input_shapes: Mapping[str, tuple[int, ...]],
                            input_types: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """Flax variables: `params`, boxed with logical axis names or beside `params_axes`."""

  @abc.abstractmethod
  def loss_fn(self, params: Any, batch: Batch, dropout_rng: jax.Array | None,
              step: jax.Array | None = None) -> tuple[jax.Array, Metrics]:
    """Scalar training loss and metrics (see the module docstring); no dropout when rng is None.

    `step` is the global step being taken (the trainer always passes it), for losses that change
    over the run (the reranker's temperature schedules); the token models ignore it.
    """

  @abc.abstractmethod
  def eval_fn(self, params: Any, batch: Batch) -> dict[str, tuple[jax.Array, jax.Array]]:
    """{metric: (numerator, denominator)} for one batch, without dropout."""

  @property
  def loss_denominator_is_additive(self) -> bool:
    """Whether a batch's `loss_denominator` is the sum of its parts' (a count of tokens or rows).
    Gradient accumulation is exact only then, so the trainer refuses micro-batches otherwise."""
    return True

  def default_input_shapes(self) -> dict[str, tuple[int, ...]]:
    """Small input shapes for `get_initial_variables` (parameters do not depend on them)."""
    raise NotImplementedError(f"{type(self).__name__} has no default input shapes")

  def describe(self) -> dict[str, Any] | None:
    """{"family": ..., "config": {...}} so a checkpoint's model can be rebuilt (None: it cannot)."""
    return None


def _token_metrics(logits_BxLxV, targets_BxL, weights_BxL, denominator, label_smoothing, z_loss):
  token_loss, token_z = losses.token_cross_entropy(logits_BxLxV, targets_BxL, label_smoothing,
                                                   z_loss)
  denominator = denominator.astype(jnp.float32)
  safe = jnp.where(denominator > 0, denominator, 1.0)  # a batch of padding has loss 0, weight 0
  loss = jnp.sum(token_loss * weights_BxL) / safe
  real = (weights_BxL != 0).astype(jnp.float32)
  num_tokens = jnp.sum(real)
  correct = (jnp.argmax(logits_BxLxV, axis=-1) == targets_BxL).astype(jnp.float32)
  metrics = {
      "loss": loss,
      "z_loss": jnp.sum(token_z * weights_BxL) / safe,
      "accuracy": jnp.sum(correct * real) / jnp.maximum(num_tokens, 1.0),
      DENOMINATOR: denominator,
      "num_target_tokens": num_tokens,
  }
  return loss, metrics


def _teacher_forced_eval(logits_BxLxV, targets_BxL, weights_BxL, segment_ids_BxL):
  nll_BxL, _ = losses.token_cross_entropy(logits_BxLxV, targets_BxL)
  real = (weights_BxL != 0).astype(jnp.float32)
  correct = (jnp.argmax(logits_BxLxV, axis=-1) == targets_BxL).astype(jnp.float32)
  num_tokens = jnp.sum(real)
  good, num_seq = losses.segment_all_correct(correct, real, segment_ids_BxL)
  return {
      "loss": (jnp.sum(nll_BxL * real), num_tokens),
      "accuracy": (jnp.sum(correct * real), num_tokens),
      "sequence_accuracy": (good, num_seq),
  }


class _TokenModel(BaseModel):
  """Shared loss options: label smoothing, z-loss and the loss normaliser (T5X's defaults)."""

  FAMILY = ""

  def __init__(self, module: nn.Module, label_smoothing: float = 0.0, z_loss: float = 0.0,
               loss_normalizing_factor: str | float | None = losses.NUM_REAL_TARGET_TOKENS):
    self.module = module
    self.label_smoothing = float(label_smoothing)
    self.z_loss = float(z_loss)
    self.loss_normalizing_factor = loss_normalizing_factor

  @property
  def loss_denominator_is_additive(self) -> bool:
    return isinstance(self.loss_normalizing_factor, str)  # a count, not a constant

  def _logits(self, params, batch, dropout_rng, enable_dropout):
    raise NotImplementedError

  def _weights(self, batch):
    return losses.loss_weights_and_normalizer(
        batch["decoder_target_tokens"], batch.get("decoder_loss_weights"),
        self.loss_normalizing_factor, batch.get("decoder_segment_ids"))

  def loss_fn(self, params, batch, dropout_rng, step=None):
    del step  # the token losses do not change over the run
    logits = self._logits(params, batch, dropout_rng, enable_dropout=dropout_rng is not None)
    weights, denominator = self._weights(batch)
    return _token_metrics(logits, batch["decoder_target_tokens"], weights, denominator,
                          self.label_smoothing, self.z_loss)

  def eval_fn(self, params, batch):
    logits = self._logits(params, batch, None, enable_dropout=False)
    weights = batch.get("decoder_loss_weights")
    if weights is None:
      weights = batch["decoder_target_tokens"] > 0
    return _teacher_forced_eval(logits, batch["decoder_target_tokens"], weights,
                                batch.get("decoder_segment_ids"))

  def describe(self):
    config = getattr(self.module, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
      return None
    return {"family": self.FAMILY, "config": config_to_dict(config)}


class EncoderDecoderModel(_TokenModel):
  """An encoder-decoder network with T5X's example-network interface (our `t5.Transformer`)."""

  FEATURE_CONVERTER_CLS = seqio.EncDecFeatureConverter
  FAMILY = "t5"

  def default_input_shapes(self):
    return {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    types = dict(input_types or {})
    enc = jnp.ones(input_shapes["encoder_input_tokens"],
                   types.get("encoder_input_tokens", jnp.int32))
    dec = jnp.ones(input_shapes["decoder_input_tokens"],
                   types.get("decoder_input_tokens", jnp.int32))
    return self.module.init({"params": rng, "dropout": rng}, enc, dec, dec, enable_dropout=False)

  def _logits(self, params, batch, dropout_rng, enable_dropout):
    rngs = {"dropout": dropout_rng} if enable_dropout else None
    return self.module.apply(
        {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
        batch["decoder_target_tokens"], encoder_segment_ids=batch.get("encoder_segment_ids"),
        decoder_segment_ids=batch.get("decoder_segment_ids"),
        encoder_positions=batch.get("encoder_positions"),
        decoder_positions=batch.get("decoder_positions"),
        enable_dropout=enable_dropout, decode=False, rngs=rngs)


class DecoderOnlyModel(_TokenModel):
  """A decoder-only network with T5X's DecoderOnly interface; a prefix LM when inputs exist."""

  FEATURE_CONVERTER_CLS = seqio.DecoderFeatureConverter
  FAMILY = "gpt"

  def default_input_shapes(self):
    return {"decoder_input_tokens": (1, 8)}

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    types = dict(input_types or {})
    dec = jnp.ones(input_shapes["decoder_input_tokens"],
                   types.get("decoder_input_tokens", jnp.int32))
    return self.module.init({"params": rng, "dropout": rng}, dec, dec, enable_dropout=False)

  def _logits(self, params, batch, dropout_rng, enable_dropout):
    rngs = {"dropout": dropout_rng} if enable_dropout else None
    return self.module.apply(
        {"params": params}, batch["decoder_input_tokens"], batch["decoder_target_tokens"],
        decoder_segment_ids=batch.get("decoder_segment_ids"),
        decoder_positions=batch.get("decoder_positions"),
        decoder_causal_attention=batch.get("decoder_causal_attention"),
        enable_dropout=enable_dropout, decode=False, rngs=rngs)


def model_from_description(description: Mapping[str, Any], **options) -> BaseModel:
  """Rebuilds the model a `model_config.json` describes (`options`: loss settings)."""
  family, config = description["family"], dict(description["config"])
  if family == "t5":
    from kard_jax.models import t5
    return EncoderDecoderModel(t5.Transformer(t5.T5Config(**config)), **options)
  if family == "gpt":
    from kard_jax.models import gpt
    return DecoderOnlyModel(gpt.GPT(gpt.GPTConfig(**config)), **options)
  raise ValueError(f"unknown model family {family!r} (known: 't5', 'gpt')")


def logical_param_specs(variables: Mapping[str, Any]) -> Any:
  """Each parameter's logical PartitionSpec, from boxed params or a `params_axes` collection."""
  if "params_axes" in variables:
    from flax.linen import partitioning as nn_partitioning
    return nn_partitioning.get_axis_names(variables["params_axes"])
  return nn.get_partition_spec(variables["params"])


def input_shapes_from_batch(batch: Mapping[str, Any]) -> tuple[dict[str, tuple], dict[str, Any]]:
  """(shapes, dtypes) of a batch (real or abstract), for `get_initial_variables`."""
  return ({k: tuple(np.shape(v)) for k, v in batch.items()},
          {k: np.dtype(v.dtype) for k, v in batch.items()})
