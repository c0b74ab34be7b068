"""The reranker as a trainer model: scorer + KARD's distillation loss + top-1/3/5 accuracy.

The trainer only sees `BaseModel`. The temperatures depend on the step, which `loss_fn` does not
receive, so each batch carries its step (`inputs.py`): the schedule is then part of the data
stream, resumes with it, and needs nothing from the trainer.

Metrics: `top{1,3,5}` is KARD's accuracy: whether the candidate the rationale's BM25 ranks first
(the argmax of the targets) is ranked first / in the top 3 / top 5 by the scorer; ties count
against the scorer, so a constant scorer scores no better than chance.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kard_jax.reranker import loss as loss_lib
from kard_jax.reranker import scorer as scorer_lib
from kard_jax.training import models as models_lib

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
               tau_target: loss_lib.TemperatureSchedule, tau_model: loss_lib.TemperatureSchedule,
               loss: str = "kl", description: Mapping[str, Any] | None = None):
    if loss not in LOSSES:
      raise ValueError(f"unknown loss {loss!r}; choose from {LOSSES}")
    self.module = scorer
    self.scorer_config = scorer_config
    self.tau_target, self.tau_model, self.loss = tau_target, tau_model, loss
    self._description = dict(description) if description else None

  @property
  def layout(self) -> str:
    """The batch layout this scorer reads (see inputs.py)."""
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
      return loss_lib.kl_per_example(scores, targets, tau_model, tau_target, mask)
    return loss_lib.cross_entropy_per_example(scores, targets, tau_model, mask)

  def loss_fn(self, params, batch, dropout_rng):
    scores = self.scores(params, batch, dropout_rng)
    mask = batch["candidate_mask"] > 0
    targets = batch["targets"].astype(jnp.float32)
    rows = jnp.any(mask, axis=-1).astype(jnp.float32)
    n = jnp.sum(rows)
    step = jnp.max(batch["step"])
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

  def schedules(self) -> tuple[loss_lib.TemperatureSchedule, loss_lib.TemperatureSchedule]:
    return (loss_lib.TemperatureSchedule(self.target_start, self.target_end, self.steps),
            loss_lib.TemperatureSchedule(self.model_start, self.model_end, self.steps))
