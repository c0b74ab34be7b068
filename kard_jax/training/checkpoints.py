"""Orbax checkpoints of the train state, the model description and the run's gin config.

Layout of a model directory (T5X's, plus two JSON files):
  model_dir/config.gin              the gin config the run was started with
  model_dir/model_config.json       {"family": "t5" | "gpt" | ..., "config": {dataclass fields}}
  model_dir/checkpoint_<step>/
      params/     the parameter tree (an Orbax standard checkpoint; `restore_params` reads it)
      opt_state/  the optimizer state
      meta/       {"step", "batches_consumed", "rng"}: where the input stream and the RNG resume
  model_dir/train/, model_dir/eval/  TensorBoard summaries

Saves are atomic (Orbax writes a temporary directory and renames it), so a run killed mid-save
restarts from the previous complete checkpoint.
"""

from __future__ import annotations

import json
import os
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


def _abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)


class Checkpointer:
  """Periodic and final saves of a `TrainState` with the input position; keeps the newest `keep`."""

  def __init__(self, model_dir: str, period: int, keep: int | None = None,
               use_async: bool = True):
    self.directory = os.path.abspath(model_dir)
    self.period = int(period)
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=max(self.period, 1), max_to_keep=keep, step_prefix="checkpoint",
        enable_async_checkpointing=use_async, cleanup_tmp_directories=True, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, state: TrainState, batches_consumed: int, force: bool = False) -> bool:
    """Saves when `step` is on the period (or `force`); returns whether a save started."""
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return False
    meta = {"step": step, "batches_consumed": int(batches_consumed),
            "rng": np.asarray(jax.device_get(state.rng)).tolist()}
    return self._manager.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(state.params),
        opt_state=ocp.args.StandardSave(state.opt_state),
        meta=ocp.args.JsonSave(meta)), force=force)

  def restore(self, setup: StateSetup, step: int | None = None) -> tuple[TrainState, dict]:
    """The state at `step` (default: latest), placed with `setup`'s shardings, and its meta."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
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
  """(model_dir/checkpoint_<step>, step) of the newest complete checkpoint."""
  model_dir = os.path.abspath(model_dir)
  manager = ocp.CheckpointManager(
      model_dir, options=ocp.CheckpointManagerOptions(step_prefix="checkpoint", read_only=True,
                                                     create=False),
      item_names=_ITEMS)
  step = manager.latest_step()
  manager.close()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {model_dir}")
  return os.path.join(model_dir, f"checkpoint_{step}"), int(step)


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
