"""Parameter trees on disk: an Orbax standard checkpoint, plus the model description beside it.

Layout of a parameter directory (what `kard convert hf-to-flax` writes and the trainer can start from):
  DIR/                    an Orbax `StandardCheckpointer` checkpoint of the (unboxed) parameter tree
  DIR/model_config.json   {"family": "t5" | "gpt" | "bert", "config": {config dataclass fields}}

The tree format is the trainer's `params/` item, so a converted checkpoint and a trained one are read
the same way. Restoring with shardings places each array directly on its devices (no host copy of
the whole tree), which is what makes XL-sized trees loadable onto a mesh.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from kard_jax.data.errors import InputError

MODEL_CONFIG = "model_config.json"


def config_to_dict(config: Any) -> dict[str, Any]:
  """A config dataclass as JSON-ready fields (dtypes become their names)."""
  out = {}
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if not isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)):
      try:
        value = np.dtype(value).name
      except TypeError:
        value = str(value)
    out[field.name] = value
  return out


def save(path, params: Any, *, family: str | None = None, config: Any = None) -> None:
  """Writes `params` (plain or logically boxed, on any devices) to `path`, replacing what was there.

  With `family` and a dataclass `config`, also writes model_config.json so the model can be rebuilt.
  """
  import orbax.checkpoint as ocp

  from kard_jax.data.jsonl import atomic_open

  path = os.path.abspath(os.fspath(path))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, nn.unbox(params), force=True)
  checkpointer.wait_until_finished()
  if family is not None and jax.process_index() == 0:
    description = {"family": family, "config": config_to_dict(config)}
    with atomic_open(os.path.join(path, MODEL_CONFIG), "w") as f:
      json.dump(description, f, indent=2, sort_keys=True)
      f.write("\n")


def read_model_config(path) -> dict[str, Any] | None:
  """The {"family", "config"} description saved with the parameters, or None if there is none."""
  file = os.path.join(os.fspath(path), MODEL_CONFIG)
  if not os.path.exists(file):
    return None
  with open(file, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise InputError(file, f"invalid JSON ({e.msg})", e.lineno) from None


def restore(path, target: Any = None, *, shardings: Any = None) -> Any:
  """Reads a parameter tree as jax arrays.

  `target`: a tree of arrays or `jax.ShapeDtypeStruct`s (boxed or not, e.g. `jax.eval_shape` of the
  model's init) that the checkpoint must match, and whose dtypes the arrays are cast to; None takes
  the checkpoint's own shapes and dtypes. `shardings`: one `jax.sharding.Sharding` for every array, or
  a tree of them matching the parameters; None puts everything on the first device.
  """
  import orbax.checkpoint as ocp

  path = os.path.abspath(os.fspath(path))
  if not os.path.isdir(path):
    raise InputError(path, "no parameter checkpoint here (expected an Orbax checkpoint directory)")
  checkpointer = ocp.StandardCheckpointer()
  try:
    stored = checkpointer.metadata(path).item_metadata.tree
  except Exception as e:  # Orbax raises several types for a directory that is not a checkpoint
    raise InputError(path, f"not a readable Orbax checkpoint ({e})") from None
  stored = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), stored)
  if target is None:
    target = stored
  else:
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), nn.unbox(target))
    _check_matches(path, stored, target)
  if shardings is None:
    shardings = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree.map(lambda _: shardings, target)
  abstract = jax.tree.map(lambda t, s: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=s),
                          target, shardings)
  return checkpointer.restore(path, abstract)


def _check_matches(path: str, stored: Any, target: Any) -> None:
  """Names the first parameter that is missing, unexpected or of another shape."""
  flat = lambda tree: {jax.tree_util.keystr(k): v
                       for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  have, want = flat(stored), flat(target)
  for name in sorted(set(want) - set(have)):
    raise InputError(path, f"checkpoint has no parameter {name}")
  for name in sorted(set(have) - set(want)):
    raise InputError(path, f"checkpoint parameter {name} is not in the model")
  for name in sorted(want):
    if tuple(have[name].shape) != tuple(want[name].shape):
      raise InputError(path, f"parameter {name} has shape {tuple(have[name].shape)}, "
                       f"the model expects {tuple(want[name].shape)}")
