"""The reranker as a trainer model: KARD's distillation loss, its temperature schedules, the
trainer's `BaseModel` around a scorer (`scorer.py`), and its optimizer.

The objective: KARD's reranker sees only the question, yet is trained so that
softmax(score / tau_model) over a candidate list mimics softmax(bm25(rationale, passage) /
tau_target). Both temperatures follow an explicit schedule that stays strictly positive: the
official code's annealing (tau = tau0 - 4 * ramp, tau_model = tau_model0 - 400 * ramp, with
ramp = 2 / (1 + exp(-10 t)) - 1) crosses zero after about 5% of training for its default start
values (1.0 and 100.0), flipping the sign of the objective. Here a temperature moves geometrically
from `start` to `end` (both > 0), so it is positive at every step by construction. The trainer
passes the global step to `loss_fn` (`BaseModel.loss_fn(..., step)`), which evaluates both
schedules there; evaluation uses their final values.

Defaults (gin_configs/reranker/base.gin), chosen on StrategyQA with MiniLM: tau_target = 4 (held
constant), tau_model from 50 to 20. Among 8 sampled candidates the rationale's BM25 scores spread by
~10 (std) and the untrained MaxSim scores by ~110. tau_target = 4 leaves the targets ~0.8 nats of
entropy (uniform: 2.08), so the order below the top passage still teaches something; KARD's
tau_target = 1 is nearly one-hot (0.23 nats) and, tried against 4 with the compressor alone, gave
lower recall@5 (0.436 vs 0.444 of the golden sentences). tau_model = 50 gives the untrained scorer
about the targets' entropy, so training does not start by undoing a large KL; annealing it to 20
lets the scorer sharpen late without inflating its weights.

Metrics: `top{1,3,5}` is KARD's accuracy: whether the candidate the rationale's BM25 ranks first
(the argmax of the targets) is ranked first / in the top 3 / top 5 by the scorer; ties count
against the scorer, so a constant scorer scores no better than chance.

The optimizer: AdamW with a larger step for the freshly initialised head. The encoder starts from
pretrained weights and wants a fine-tuning rate (~1e-5); the compressor (or cross-encoder head)
starts from scratch and, at that rate, barely moves in a CPU-sized run. `head_multiplier` scales
the head's rate; bind it as the trainer's optimizer:
    train_script.train.optimizer = @model.adamw_with_head()   (note the call: a factory)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from kard_jax.reranker import scorer as scorer_lib
from kard_jax.training import models as models_lib
from kard_jax.training import optimizers

NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class TemperatureSchedule:
  """Geometric interpolation from `start` to `end` over `steps`, then constant at `end`.

  The ramp has the official sigmoid shape (fast early, flat late) but acts on log(tau), so every
  value lies between `start` and `end` and is therefore positive.
  """

  start: float
  end: float
  steps: int = 1

  def __post_init__(self):
    if not (self.start > 0 and self.end > 0):
      raise ValueError(f"temperatures must be positive, got start={self.start}, end={self.end}")
    if self.steps < 1:
      raise ValueError(f"steps must be >= 1, got {self.steps}")

  def __call__(self, step) -> jax.Array:
    t = jnp.clip(jnp.asarray(step, jnp.float32) / self.steps, 0.0, 1.0)
    ramp = (2.0 / (1.0 + jnp.exp(-10.0 * t)) - 1.0) / (2.0 / (1.0 + jnp.exp(-10.0)) - 1.0)
    log_tau = (1.0 - ramp) * jnp.log(self.start) + ramp * jnp.log(self.end)
    return jnp.exp(log_tau)


def _masked(x: jax.Array, mask: jax.Array | None) -> jax.Array:
  return x if mask is None else jnp.where(mask, x, NEG_INF)


def kl_per_example(scores_BxK: jax.Array, targets_BxK: jax.Array, tau_model, tau_target,
                   mask_BxK: jax.Array | None = None) -> jax.Array:
  """KL(softmax(targets/tau_target) || softmax(scores/tau_model)) of each row: [B].

  `mask` marks real candidates (a list may be shorter than K); masked ones get zero probability.
  """
  log_p = jax.nn.log_softmax(_masked(targets_BxK / tau_target, mask_BxK), axis=-1)
  log_q = jax.nn.log_softmax(_masked(scores_BxK / tau_model, mask_BxK), axis=-1)
  p = jnp.exp(log_p)
  terms = jnp.where(p > 0, p * (log_p - log_q), 0.0)
  return jnp.sum(terms, axis=-1)


def kl_loss(scores_BxK: jax.Array, targets_BxK: jax.Array, tau_model, tau_target,
            mask_BxK: jax.Array | None = None) -> jax.Array:
  """Mean over the batch of `kl_per_example` (torch's KLDivLoss with reduction="batchmean")."""
  return jnp.mean(kl_per_example(scores_BxK, targets_BxK, tau_model, tau_target, mask_BxK))


def cross_entropy_per_example(scores_BxK: jax.Array, targets_BxK: jax.Array, tau_model,
                              mask_BxK: jax.Array | None = None) -> jax.Array:
  """-log softmax(scores/tau_model)[top] of each row: [B]; `top` is the candidate BM25 ranks
  first under the rationale (the hard label of KARD's default "ce" loss)."""
  label = jnp.argmax(_masked(targets_BxK, mask_BxK), axis=-1)
  log_q = jax.nn.log_softmax(_masked(scores_BxK / tau_model, mask_BxK), axis=-1)
  return -jnp.take_along_axis(log_q, label[:, None], axis=-1)[:, 0]


def cross_entropy_loss(scores_BxK: jax.Array, targets_BxK: jax.Array, tau_model,
                       mask_BxK: jax.Array | None = None) -> jax.Array:
  """Cross-entropy towards the candidate BM25 ranks first under the rationale (the hard label)."""
  return jnp.mean(cross_entropy_per_example(scores_BxK, targets_BxK, tau_model, mask_BxK))


# --------------------------------------------------------------------------- the trainer model


LOSSES = ("kl", "ce")
TOP_K = (1, 3, 5)


def target_rank(scores_BxK: jax.Array, targets_BxK: jax.Array, mask_BxK: jax.Array) -> jax.Array:
  """0-based rank, under `scores`, of each row's best-target candidate; ties rank it last."""
  label = jnp.argmax(jnp.where(mask_BxK, targets_BxK, -jnp.inf), axis=-1)
  s = jnp.take_along_axis(scores_BxK, label[:, None], axis=-1)
  other = mask_BxK & (jnp.arange(scores_BxK.shape[-1])[None, :] != label[:, None])
  return jnp.sum(other & (scores_BxK >= s), axis=-1)


class RerankerModel(models_lib.BaseModel):
  """A scorer trained to reproduce BM25's ranking under the rationale from the question alone."""

  FEATURE_CONVERTER_CLS = None

  def __init__(self, scorer: nn.Module, scorer_config: scorer_lib.ScorerConfig,
               tau_target: TemperatureSchedule, tau_model: TemperatureSchedule,
               loss: str = "kl", description: Mapping[str, Any] | None = None):
    if loss not in LOSSES:
      raise ValueError(f"unknown loss {loss!r}; choose from {LOSSES}")
    self.module = scorer
    self.scorer_config = scorer_config
    self.tau_target, self.tau_model, self.loss = tau_target, tau_model, loss
    self._description = dict(description) if description else None

  @property
  def layout(self) -> str:
    """The batch layout this scorer reads (see `data.Tables`)."""
    if self.scorer_config.kind == "cross_encoder":
      return "pairs"
    if self.scorer_config.train_passage_encoder:
      return "ids"
    return "tail" if getattr(self.module, "query_start_layer", 0) else "states"

  # --- initialisation --------------------------------------------------------------------------

  def default_input_shapes(self) -> dict[str, tuple[int, ...]]:
    if self.layout == "pairs":
      return {"pair_ids": (1, 1, 4)}
    H = self.module.bert_config.emb_dim
    shapes = {"query_ids": (1, 4), "passage_mask": (1, 1, 4)}
    if self.layout == "tail":
      shapes = {"query_states": (1, 4, H), "passage_mask": (1, 1, 4)}
    if self.layout in ("states", "tail"):
      shapes["passage_states"] = (1, 1, 4, H)
    return shapes

  def scorer_inputs(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """The scorer's keyword arguments from a batch."""
    if self.layout == "pairs":
      return {"pair_ids": batch["pair_ids"], "pair_mask": batch["pair_mask"],
              "pair_type_ids": batch["pair_type_ids"]}
    query = batch["query_states"] if self.layout == "tail" else batch["query_ids"]
    out = {"query": query, "query_mask": batch["query_mask"],
           "passage_mask": batch["passage_mask"]}
    key = "passage_ids" if self.layout == "ids" else "passage_states"
    out[key] = batch[key]
    return out

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    shapes = dict(self.default_input_shapes())
    shapes.update({k: v for k, v in input_shapes.items() if k in shapes})
    if self.layout == "pairs":
      ids = jnp.ones(shapes["pair_ids"], jnp.int32)
      inputs = {"pair_ids": ids, "pair_mask": ids, "pair_type_ids": jnp.zeros_like(ids)}
    else:
      pm = jnp.ones(shapes["passage_mask"], jnp.int32)
      if self.layout == "tail":
        q = jnp.zeros(shapes["query_states"], jnp.float32)
        q_mask = jnp.ones(shapes["query_states"][:2], jnp.int32)
      else:
        q = q_mask = jnp.ones(shapes["query_ids"], jnp.int32)
      inputs = {"query": q, "query_mask": q_mask, "passage_mask": pm}
      if self.layout == "ids":
        inputs["passage_ids"] = pm
      else:
        inputs["passage_states"] = jnp.zeros(shapes["passage_states"], jnp.float32)
    return self.module.init({"params": rng, "dropout": rng}, **inputs, enable_dropout=False)

  # --- scoring and losses ----------------------------------------------------------------------

  def scores(self, params, batch, dropout_rng=None) -> jax.Array:
    enable = dropout_rng is not None
    rngs = {"dropout": dropout_rng} if enable else None
    return self.module.apply({"params": params}, **self.scorer_inputs(batch),
                             enable_dropout=enable, rngs=rngs)

  def _per_example(self, scores, targets, mask, tau_model, tau_target):
    if self.loss == "kl":
      return kl_per_example(scores, targets, tau_model, tau_target, mask)
    return cross_entropy_per_example(scores, targets, tau_model, mask)

  def loss_fn(self, params, batch, dropout_rng, step=None):
    """The loss at the temperatures of the schedules at `step` (the global training step)."""
    if step is None:
      raise ValueError("the reranker's loss needs the training step: its temperatures follow a "
                       "schedule over the run")
    scores = self.scores(params, batch, dropout_rng)
    mask = batch["candidate_mask"] > 0
    targets = batch["targets"].astype(jnp.float32)
    rows = jnp.any(mask, axis=-1).astype(jnp.float32)
    n = jnp.sum(rows)
    tau_t, tau_m = self.tau_target(step), self.tau_model(step)
    per = self._per_example(scores, targets, mask, tau_m, tau_t)
    loss = jnp.sum(per * rows) / jnp.maximum(n, 1.0)
    rank = target_rank(scores, targets, mask)
    metrics = {"loss": loss, "tau_target": tau_t, "tau_model": tau_m,
               models_lib.DENOMINATOR: n, "num_examples": n}
    for k in TOP_K:
      metrics[f"top{k}"] = jnp.sum((rank < k) * rows) / jnp.maximum(n, 1.0)
    return loss, metrics

  def eval_fn(self, params, batch):
    """Loss at the schedules' final temperatures, and KARD's top-1/3/5 accuracy."""
    scores = self.scores(params, batch)
    mask = batch["candidate_mask"] > 0
    targets = batch["targets"].astype(jnp.float32)
    rows = jnp.any(mask, axis=-1).astype(jnp.float32)
    n = jnp.sum(rows)
    per = self._per_example(scores, targets, mask, self.tau_model.end, self.tau_target.end)
    rank = target_rank(scores, targets, mask)
    out = {"loss": (jnp.sum(per * rows), n)}
    for k in TOP_K:
      out[f"top{k}"] = (jnp.sum((rank < k) * rows), n)
    return out

  def describe(self):
    return self._description


def numpy_rank_reference(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Loop version of `target_rank` (for tests and the evaluator's host-side checks)."""
  out = []
  for s, t, m in zip(scores, targets, mask):
    idx = np.flatnonzero(m)
    label = idx[np.argmax(t[idx])]
    out.append(sum(1 for j in idx if j != label and s[j] >= s[label]))
  return np.asarray(out)


@dataclasses.dataclass(frozen=True)
class TemperatureConfig:
  """Both schedules of a run; `steps` should be the run's number of training steps."""
  target_start: float
  target_end: float
  model_start: float
  model_end: float
  steps: int

  def schedules(self) -> tuple[TemperatureSchedule, TemperatureSchedule]:
    return (TemperatureSchedule(self.target_start, self.target_end, self.steps),
            TemperatureSchedule(self.model_start, self.model_end, self.steps))


# ------------------------------------------------------------------------------- the optimizer


HEADS = ("compressor", "head")


def _labels(params: Any) -> Any:
  return {k: jax.tree.map(lambda _: "head" if k in HEADS else "encoder", v)
          for k, v in params.items()}


def adamw_with_head(head_multiplier: float = 30.0, weight_decay: float = 0.01,
                    max_grad_norm: float | None = 1.0
                    ) -> Callable[[optax.ScalarOrSchedule], optax.GradientTransformation]:
  """A trainer `optimizer`: called with the learning rate (or schedule), returns the transform."""

  def make(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    if callable(learning_rate):
      head_rate = lambda step: head_multiplier * learning_rate(step)  # noqa: E731
    else:
      head_rate = head_multiplier * learning_rate
    tx = optax.multi_transform(
        {"encoder": optimizers.adamw(learning_rate, weight_decay=weight_decay),
         "head": optimizers.adamw(head_rate, weight_decay=weight_decay)}, _labels)
    if max_grad_norm is None or max_grad_norm <= 0:
      return tx
    return optax.chain(optax.clip_by_global_norm(float(max_grad_norm)), tx)

  return make
