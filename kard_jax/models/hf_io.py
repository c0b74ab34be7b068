"""Reading and writing Hugging Face checkpoint folders (config.json + *.safetensors) as numpy.

Converters take the flat {name: array} dict this returns and `take()` the tensors they expect, so a
missing or mis-shaped tensor is reported by name with the file it should have come from.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from kard_jax.data.errors import InputError


class CheckpointTensors:
  """The tensors of one checkpoint folder, with checked access and a record of what was used."""

  def __init__(self, folder, tensors: Mapping[str, np.ndarray]):
    self.folder = os.fspath(folder)
    self.tensors = dict(tensors)
    self.used: set[str] = set()

  def __contains__(self, name: str) -> bool:
    return name in self.tensors

  def take(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if name not in self.tensors:
      raise InputError(self.folder, f"checkpoint has no tensor {name!r}")
    value = self.tensors[name]
    if shape is not None and tuple(value.shape) != tuple(shape):
      raise InputError(self.folder, f"tensor {name!r} has shape {tuple(value.shape)}, "
                       f"expected {tuple(shape)}")
    self.used.add(name)
    return value

  def unused(self) -> list[str]:
    return sorted(set(self.tensors) - self.used)


def read_config(folder) -> dict[str, Any]:
  path = os.path.join(os.fspath(folder), "config.json")
  if not os.path.exists(path):
    raise InputError(path, "file not found (a Hugging Face checkpoint folder needs config.json)")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise InputError(path, f"invalid JSON ({e.msg})", e.lineno) from None


def read_tensors(folder) -> CheckpointTensors:
  """Loads every *.safetensors file in `folder` (sharded checkpoints included) as float32/ints."""
  from safetensors.numpy import load_file

  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise InputError(folder, "checkpoint folder not found")
  files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
  if not files:
    raise InputError(folder, "no *.safetensors file in the checkpoint folder")
  tensors: dict[str, np.ndarray] = {}
  for name in files:
    path = os.path.join(folder, name)
    try:
      loaded = load_file(path)
    except Exception as e:  # safetensors raises its own error types for corrupt headers
      raise InputError(path, f"cannot read safetensors file ({e})") from None
    for key, value in loaded.items():
      if value.dtype.kind == "f" and value.dtype != np.float32:
        value = value.astype(np.float32)
      tensors[key] = value
  return CheckpointTensors(folder, tensors)


def write_checkpoint(folder, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> None:
  """Writes config.json and model.safetensors (contiguous arrays, 'pt' metadata as HF expects)."""
  from safetensors.numpy import save_file

  from kard_jax.data.jsonl import atomic_open

  folder = os.fspath(folder)
  os.makedirs(folder, exist_ok=True)
  with atomic_open(os.path.join(folder, "config.json")) as f:
    json.dump(dict(config), f, indent=2, sort_keys=True)
  arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
  tmp = os.path.join(folder, ".model.safetensors.tmp")
  save_file(arrays, tmp, metadata={"format": "pt"})
  os.replace(tmp, os.path.join(folder, "model.safetensors"))
