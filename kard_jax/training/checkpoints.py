"""Orbax checkpoints of the train state, the model description and the run's gin config.

Layout of a model directory (T5X's, plus two JSON files):
  model_dir/config.gin              the gin config the run was started with
  model_dir/model_config.json       {"family": "t5" | "gpt" | ..., "config": {dataclass fields}}
  model_dir/checkpoint_<step>/
      params/     the parameter tree (an Orbax standard checkpoint; `restore_params` reads it)
      opt_state/  the optimizer state
      meta/       {"step", "batches_consumed", "rng"}: where the input stream and the RNG resume
  model_dir/train/, model_dir/eval/  TensorBoard summaries

Saves are asynchronous: Orbax copies the state off the devices before `save` returns (so the
train step may donate the buffers at once), writes `checkpoint_<step>.orbax-checkpoint-tmp/` in
the background and commits by renaming it. A run restores only from a *committed* checkpoint
(`is_committed`): named `checkpoint_<step>`, with Orbax's commit marker and commit time, every
item complete and `meta` naming the same step. A torn save, killed at any point, is never loaded:
a temporary directory is ignored (Orbax removes it), and a `checkpoint_<step>` that fails the check
(a filesystem without atomic renames, a partial copy) is set aside as `torn.checkpoint_<step>.<ns>`
with a warning, so the newest committed checkpoint is the one resumed and the step can be saved
again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from kard_jax.data.jsonl import atomic_open
from kard_jax.models import params_io
from kard_jax.training.train_state import StateSetup, TrainState

MODEL_CONFIG = "model_config.json"
GIN_CONFIG = "config.gin"
_ITEMS = ("params", "opt_state", "meta")
_STEP_DIR = re.compile(r"checkpoint_(\d+)")
_COMMIT_FILE = "commit_success.txt"  # Orbax writes it into the step and every item when it commits
_STEP_METADATA = "_CHECKPOINT_METADATA"  # Orbax's; `commit_timestamp_nsecs` is set at commit

log = logging.getLogger(__name__)


def is_committed(folder: str, step: int | None = None) -> bool:
  """Whether `folder` (model_dir/checkpoint_<step>) holds a save that committed completely."""
  name = os.path.basename(os.path.normpath(folder))
  match = _STEP_DIR.fullmatch(name)
  if match is None or (step is not None and int(match.group(1)) != step):
    return False
  step = int(match.group(1))
  try:
    if not os.path.isfile(os.path.join(folder, _COMMIT_FILE)):
      return False
    with open(os.path.join(folder, _STEP_METADATA), encoding="utf-8") as f:
      if not json.load(f).get("commit_timestamp_nsecs"):
        return False
    for item in _ITEMS:
      if not os.path.isfile(os.path.join(folder, item, _COMMIT_FILE)):
        return False
    with open(os.path.join(folder, "meta", "metadata"), encoding="utf-8") as f:
      return json.load(f).get("step") == step
  except (OSError, ValueError, AttributeError):
    return False


def _step_dirs(model_dir: str) -> dict[int, str]:
  """step -> folder for every `checkpoint_<step>` directory, committed or not."""
  try:
    names = os.listdir(model_dir)
  except FileNotFoundError:
    return {}
  out = {}
  for name in names:
    match = _STEP_DIR.fullmatch(name)
    if match and os.path.isdir(os.path.join(model_dir, name)):
      out[int(match.group(1))] = os.path.join(model_dir, name)
  return out


def committed_steps(model_dir: str) -> list[int]:
  """The steps of `model_dir`'s committed checkpoints, oldest first."""
  return sorted(step for step, folder in _step_dirs(model_dir).items()
                if is_committed(folder, step))


def set_aside_torn(model_dir: str) -> list[str]:
  """Renames every `checkpoint_<step>` that did not commit to `torn.checkpoint_<step>.<ns>`."""
  moved = []
  if jax.process_index() != 0:
    return moved
  for step, folder in sorted(_step_dirs(model_dir).items()):
    if not is_committed(folder, step):
      target = os.path.join(model_dir, f"torn.checkpoint_{step}.{time.time_ns()}")
      os.rename(folder, target)
      log.warning("checkpoint %s did not commit (an interrupted save); set aside as %s and "
                  "never loaded", folder, target)
      moved.append(target)
  return moved


def _abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)


class Checkpointer:
  """Periodic and final saves of a `TrainState` with the input position; keeps the newest `keep`."""

  def __init__(self, model_dir: str, period: int, keep: int | None = None,
               use_async: bool = True):
    self.directory = os.path.abspath(model_dir)
    self.period = int(period)
    self.torn = set_aside_torn(self.directory)  # before Orbax lists the steps
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=max(self.period, 1), max_to_keep=keep, step_prefix="checkpoint",
        enable_async_checkpointing=use_async, cleanup_tmp_directories=True, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

  def latest_step(self) -> int | None:
    """The newest committed step (a save still in flight, or torn, is not one)."""
    steps = self.all_steps()
    return steps[-1] if steps else None

  def all_steps(self) -> list[int]:
    """Committed steps, oldest first."""
    return committed_steps(self.directory)

  def save(self, state: TrainState, batches_consumed: int, force: bool = False) -> bool:
    """Saves when `step` is on the period (or `force`); returns whether a save started."""
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():  # committed, or this run's save still in flight
      return False
    meta = {"step": step, "batches_consumed": int(batches_consumed),
            "rng": np.asarray(jax.device_get(state.rng)).tolist()}
    return self._manager.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(state.params),
        opt_state=ocp.args.StandardSave(state.opt_state),
        meta=ocp.args.JsonSave(meta)), force=force)

  def restore(self, setup: StateSetup, step: int | None = None) -> tuple[TrainState, dict]:
    """The state at `step` (default: the newest committed), placed with `setup`'s shardings, and
    its meta. Only a committed checkpoint is ever read."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no committed checkpoint in {self.directory}")
    if not is_committed(os.path.join(self.directory, f"checkpoint_{step}"), step):
      raise FileNotFoundError(f"checkpoint_{step} in {self.directory} has not committed")
    abstract = _abstract_with_shardings(setup.abstract_state, setup.shardings)
    out = self._manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract.params),
        opt_state=ocp.args.StandardRestore(abstract.opt_state),
        meta=ocp.args.JsonRestore()))
    meta = dict(out["meta"])
    rng = jax.device_put(np.asarray(meta["rng"], dtype=setup.abstract_state.rng.dtype),
                         setup.shardings.rng)
    step_arr = jax.device_put(np.asarray(meta["step"], np.int32), setup.shardings.step)
    return TrainState(step=step_arr, params=out["params"], opt_state=out["opt_state"],
                      rng=rng), meta

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


# --- parameters alone: pretrained initialisation and the evaluator -----------------------------

def save_params(path: str, params: Any) -> None:
  """Writes a parameter tree in the `params/` item's format (`kard_jax.models.params_io`)."""
  params_io.save(path, params)


def restore_params(path: str, abstract_params: Any | None = None, shardings: Any | None = None,
                   mesh: Mesh | None = None) -> Any:
  """Reads a parameter tree, placed with `shardings` if given, else on one device (the mesh's
  first).

  `abstract_params` (shapes/dtypes) makes a mismatch with the model an error naming the parameter.
  """
  if shardings is None and mesh is not None:
    shardings = jax.sharding.SingleDeviceSharding(mesh.devices.flat[0])
  return params_io.restore(path, abstract_params, shardings=shardings)


def latest_checkpoint_dir(model_dir: str) -> tuple[str, int]:
  """(model_dir/checkpoint_<step>, step) of the newest committed checkpoint."""
  model_dir = os.path.abspath(model_dir)
  steps = committed_steps(model_dir)
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {model_dir}")
  return os.path.join(model_dir, f"checkpoint_{steps[-1]}"), steps[-1]


def latest_params(model_dir: str, mesh: Mesh | None = None,
                  rules: Any | None = None) -> tuple[Any, int]:
  """(params, step) of a run's newest checkpoint, for evaluation and decoding.

  With a mesh, parameters are sharded by the model's logical axes (the model is rebuilt from
  model_config.json; `rules` default to the standard ones); without, they land on one device.
  """
  folder, step = latest_checkpoint_dir(model_dir)
  shardings = abstract = None
  if mesh is not None:
    from kard_jax.training import models as models_lib
    from kard_jax.training import partitioning
    from kard_jax.training import train_state
    model = models_lib.model_from_description(read_model_config(model_dir))
    rules = rules if rules is not None else partitioning.standard_logical_axis_rules()
    abstract, shardings, _ = train_state.param_shardings(model, mesh, rules)
  return restore_params(os.path.join(folder, "params"), abstract, shardings), step


# --- run description ---------------------------------------------------------------------------

def write_model_config(model_dir: str, description: dict[str, Any] | None) -> None:
  if description is None or jax.process_index() != 0:
    return
  os.makedirs(model_dir, exist_ok=True)
  with atomic_open(os.path.join(model_dir, MODEL_CONFIG), "w") as f:
    json.dump(description, f, indent=2, sort_keys=True)
    f.write("\n")


def read_model_config(model_dir: str) -> dict[str, Any]:
  path = os.path.join(model_dir, MODEL_CONFIG)
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_text(model_dir: str, name: str, text: str) -> None:
  if jax.process_index() != 0:
    return
  os.makedirs(model_dir, exist_ok=True)
  with atomic_open(os.path.join(model_dir, name), "w") as f:
    f.write(text)
