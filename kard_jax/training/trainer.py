"""The training loop: restore or initialise, step, log, evaluate, checkpoint, stop cleanly.

A run killed at any moment and restarted continues as if never stopped: the checkpoint holds the
state, the base RNG key (dropout keys are derived from it and the step) and the number of batches
consumed, and the input stream is deterministic, so the restart skips exactly that many batches.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from typing import Any, Callable, Iterator, Mapping

import jax
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from kard_jax.training import checkpoints as ckpt_lib
from kard_jax.training import input_pipeline
from kard_jax.training import metrics as metrics_lib
from kard_jax.training import models as models_lib
from kard_jax.training import partitioning
from kard_jax.training import step as step_lib
from kard_jax.training import train_state as state_lib

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
  """A NaN/inf loss or gradient; nothing after the last good checkpoint was saved."""


@dataclasses.dataclass
class TrainResult:
  start_step: int  # the step the run started (or resumed) at
  step: int  # the step the run ended at
  state: state_lib.TrainState
  train_metrics: dict[str, float]  # the last logged window's averages
  eval_metrics: dict[str, float]  # the last evaluation's results ({} if none)


class Trainer:
  """Compiled train/eval steps for one model, optimizer and mesh (T5X's trainer.Trainer)."""

  def __init__(self, model: models_lib.BaseModel, tx: optax.GradientTransformation,
               learning_rate: Callable[[Any], Any] | float, mesh: Mesh,
               rules: partitioning.LogicalAxisRules,
               element_spec: Mapping[str, jax.ShapeDtypeStruct],
               num_microbatches: int | None = None):
    self.model, self.tx, self.mesh, self.rules = model, tx, mesh, list(rules)
    if (num_microbatches or 1) > 1 and not model.loss_denominator_is_additive:
      raise ValueError("gradient accumulation needs a loss normalised by a count of the batch "
                       "(e.g. loss_normalizing_factor='num_real_target_tokens'); with a constant "
                       "one each micro-batch's share would be wrong")
    self.element_spec = dict(element_spec)
    data_size = mesh.shape["data"]
    for name, spec in self.element_spec.items():
      if spec.shape and spec.shape[0] % data_size:
        raise ValueError(f"batch size {spec.shape[0]} ({name}) is not divisible by the mesh's "
                         f"data axis ({data_size})")
    shapes = {k: v.shape for k, v in self.element_spec.items()}
    types = {k: v.dtype for k, v in self.element_spec.items()}
    self.setup = state_lib.setup_state(model, tx, mesh, self.rules, shapes, types)
    self._create_state = state_lib.make_initializer(model, tx, self.setup, shapes, types)
    self.batch_shardings = {k: partitioning.data_sharding(mesh) for k in self.element_spec}
    self._train_step = step_lib.compile_train_step(
        step_lib.make_train_step(model, tx, learning_rate, mesh, self.rules, num_microbatches),
        self.setup.shardings, self.batch_shardings, mesh)
    self._eval_steps: dict[tuple, Callable] = {}

  def init_state(self, seed: int, params: Any | None = None) -> state_lib.TrainState:
    """A fresh sharded state: random parameters from `seed`, or the given ones."""
    return self._create_state(seed, params)

  def global_batch(self, batch: Mapping[str, np.ndarray],
                   spec: Mapping[str, jax.ShapeDtypeStruct] | None = None) -> dict[str, jax.Array]:
    """A host batch as global arrays split over `data` (`spec`: global shapes; training's)."""
    spec = spec or self.element_spec
    shardings = {k: partitioning.data_sharding(self.mesh) for k in spec}
    return input_pipeline.make_global_batch(batch, shardings, spec)

  def train_step(self, state, batch):
    return self._train_step(state, batch)

  def evaluate(self, params: Any, eval_input: input_pipeline.InputPipeline,
               max_batches: int | None = None) -> dict[str, float]:
    """One pass (or `max_batches`) over an evaluation input: sum(numerators) / sum(denominators)."""
    spec = eval_input.element_spec
    key = tuple(sorted((k, v.shape, str(v.dtype)) for k, v in spec.items()))
    if key not in self._eval_steps:
      shardings = {k: partitioning.data_sharding(self.mesh) for k in spec}
      self._eval_steps[key] = step_lib.make_eval_step(
          self.model, self.mesh, self.rules, self.setup.shardings.params, shardings)
    eval_step = self._eval_steps[key]
    batches = list(itertools.islice(eval_input.batches(), max_batches))
    if jax.process_count() > 1:  # every host must run the same number of steps
      most = int(np.max(multihost_utils.process_allgather(np.asarray(len(batches)))))
      empty = {k: np.zeros((v.shape[0] // jax.process_count(),) + v.shape[1:], v.dtype)
               for k, v in spec.items()}
      batches += [empty] * (most - len(batches))
    totals = None
    for batch in batches:
      out = eval_step(params, self.global_batch(batch, spec))
      totals = out if totals is None else jax.tree.map(lambda a, b: a + b, totals, out)
    if totals is None:
      return {}
    totals = jax.device_get(totals)
    return {name: float(num) / max(float(den), 1e-9) for name, (num, den) in totals.items()}


def _check_finite(step0: int, host_metrics: list[Mapping[str, np.ndarray]],
                  checkpointer: ckpt_lib.Checkpointer | None) -> None:
  for offset, m in enumerate(host_metrics):
    if float(m.get("nonfinite", 0.0)) > 0:
      bad_step = step0 + offset + 1
      if checkpointer:
        checkpointer.wait()  # a save in flight (of an earlier, good step) commits first
      last = checkpointer.latest_step() if checkpointer else None
      where = (f"the last good checkpoint is step {last} in {checkpointer.directory}"
               if last is not None else "no checkpoint was written")
      raise NonFiniteLossError(
          f"step {bad_step}: non-finite loss or gradient (loss={float(m['loss'])}, "
          f"grad_norm={float(m.get('grad_norm', np.nan))}); training stopped without saving; "
          f"{where}. Lower the learning rate, enable gradient clipping or z-loss, or check the "
          f"data around batch {bad_step}.")


def train_loop(trainer: Trainer, train_input: input_pipeline.InputPipeline, total_steps: int,
               model_dir: str, seed: int, checkpointer: ckpt_lib.Checkpointer,
               init_params: Callable[[], Any] | None = None,
               eval_input: input_pipeline.InputPipeline | None = None, eval_period: int = 0,
               eval_steps: int | None = None, log_period: int = 10,
               show_progress: bool = True,
               on_start: Callable[[state_lib.TrainState], None] | None = None) -> TrainResult:
  """Runs (or resumes) training to `total_steps`; see the module docstring.

  Resumes from the newest *committed* checkpoint only (`checkpoints.is_committed`): a save the
  previous run was killed in the middle of is skipped, never loaded.
  """
  latest = checkpointer.latest_step()
  if latest is not None:
    state, meta = checkpointer.restore(trainer.setup, latest)
    batches_consumed = int(meta["batches_consumed"])
    log.info("resumed from %s at step %d", checkpointer.directory, latest)
  else:
    params = init_params() if init_params is not None else None
    state = trainer.init_state(seed, params)
    batches_consumed = 0
  start = int(jax.device_get(state.step))
  if on_start is not None:
    on_start(state)
  if start >= total_steps:
    log.info("already at step %d >= total_steps %d; nothing to do", start, total_steps)
    return TrainResult(start, start, state, {}, {})

  logger = metrics_lib.MetricsLogger(model_dir, total_steps, start, show_progress)
  batches: Iterator = train_input.batches(start=batches_consumed)
  pending: list[Mapping[str, Any]] = []
  pending_start = start
  eval_metrics: dict[str, float] = {}
  try:
    for step in range(start, total_steps):
      try:
        host_batch = next(batches)
      except StopIteration:
        raise RuntimeError(f"the training input ended after {batches_consumed} batches") from None
      state, step_metrics = trainer.train_step(state, trainer.global_batch(host_batch))
      batches_consumed += 1
      pending.append(step_metrics)
      logger.step_done()
      done = step + 1
      save_now = done == total_steps or (checkpointer.period > 0 and
                                         done % checkpointer.period == 0)
      eval_now = (eval_input is not None and eval_period > 0 and
                  (done % eval_period == 0 or done == total_steps))
      if len(pending) >= max(log_period, 1) or save_now or eval_now:
        host = jax.device_get(pending)
        _check_finite(pending_start, host, checkpointer)
        logger.write_train(done, host)
        pending, pending_start = [], done
      if save_now:
        checkpointer.save(state, batches_consumed, force=True)
      if eval_now:
        eval_metrics = trainer.evaluate(state.params, eval_input, eval_steps)
        logger.write_eval(done, eval_metrics)
      if save_now or eval_now:
        logger.reset_timer()
  except NonFiniteLossError:
    checkpointer.wait()  # let an in-flight save of an earlier, good step complete
    raise
  finally:
    logger.close()
  checkpointer.wait()
  return TrainResult(start, total_steps, state, dict(logger.last_train), eval_metrics)


def find_params_checkpoint(path: str) -> str:
  """`path` itself if it holds a parameter checkpoint (e.g. converted pretrained weights), else the
  params of a run directory's latest checkpoint (so `init_checkpoint` may name either)."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"init_checkpoint {path} does not exist")
  if any(name.startswith("checkpoint_") for name in os.listdir(path)):
    folder, _ = ckpt_lib.latest_checkpoint_dir(path)
    return os.path.join(folder, "params")
  return path
