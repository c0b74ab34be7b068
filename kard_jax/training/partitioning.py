"""Device mesh, logical-axis rules and the shardings derived from them (T5X's partitioning).

Models name their parameter axes (`vocab`, `embed`, `mlp`, `heads`, ...); a list of rules maps each
name to a mesh axis (`data` or `model`) or to None (replicated). Everything sharded in the trainer
goes through `logical_to_sharding`, so changing the mesh or the rules never touches model code.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
import seqio
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

LogicalAxisRules = Sequence[tuple[str, str | None]]
MESH_AXES = ("data", "model")


def standard_logical_axis_rules() -> list[tuple[str, str | None]]:
  """T5X's default 1-D parameter partitioning: batch over `data`, the wide axes over `model`."""
  return [
      ("batch", "data"),
      ("vocab", "model"),
      ("mlp", "model"),
      ("heads", "model"),
      ("joined_kv", "model"),
      ("embed", None),
      ("kv", None),
      ("length", None),
      ("relpos_buckets", None),
      ("abspos_buckets", None),
      ("layers", None),
      ("stack", None),
      ("mlp_activations", None),
  ]


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  """Multi-process settings: `jax.distributed.initialize` runs when `num_processes` > 1 or
  `auto_detect` is set (Cloud TPU pods, SLURM and other clusters JAX recognises).

  Unset fields come from the environment (KARD_COORDINATOR, KARD_NUM_PROCESSES, KARD_PROCESS_ID)
  or, left None, from JAX's cluster detection.
  """
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  auto_detect: bool = False


_DISTRIBUTED_READY = False


def maybe_initialize_distributed(config: DistributedConfig | None = None) -> None:
  """Joins the process group once, before anything else touches the JAX backend."""
  global _DISTRIBUTED_READY
  config = config or DistributedConfig()
  env = os.environ
  num = config.num_processes
  if num is None and "KARD_NUM_PROCESSES" in env:
    num = int(env["KARD_NUM_PROCESSES"])
  if _DISTRIBUTED_READY or not (config.auto_detect or (num is not None and num > 1)):
    return
  pid = config.process_id
  if pid is None and "KARD_PROCESS_ID" in env:
    pid = int(env["KARD_PROCESS_ID"])
  jax.distributed.initialize(coordinator_address=config.coordinator_address or
                             env.get("KARD_COORDINATOR"), num_processes=num, process_id=pid)
  _DISTRIBUTED_READY = True


def resolve_mesh_shape(mesh_shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """Replaces one -1 by whatever fills `num_devices`; checks the product otherwise.

  A shape without -1 may use fewer devices than exist (e.g. (1, 1) for a single-device run).
  """
  shape = [int(s) for s in mesh_shape]
  if len(shape) != len(MESH_AXES):
    raise ValueError(f"mesh_shape {tuple(shape)} must have one size per axis {MESH_AXES}")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh_shape {tuple(shape)}: at most one axis may be -1")
  if any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"mesh_shape {tuple(shape)}: sizes must be positive or -1")
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    if num_devices % known:
      raise ValueError(f"mesh_shape {tuple(shape)} does not divide {num_devices} devices")
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) > num_devices:
    raise ValueError(f"mesh_shape {tuple(shape)} needs {math.prod(shape)} devices, "
                     f"only {num_devices} available")
  return tuple(shape)


def create_mesh(mesh_shape: Sequence[int] = (-1, 1),
                devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, model) mesh; the device order follows the hardware topology where JAX knows it."""
  devices = list(devices if devices is not None else jax.devices())
  shape = resolve_mesh_shape(mesh_shape, len(devices))
  n = math.prod(shape)
  if n == len(devices):
    grid = mesh_utils.create_device_mesh(shape, devices)
  else:  # a sub-mesh: topology-aware placement needs all devices, so take them in order
    grid = np.asarray(devices[:n], dtype=object).reshape(shape)
  return Mesh(grid, MESH_AXES)


def host_shard_info() -> seqio.ShardInfo:
  """The slice of the input this process reads: one shard per host."""
  return seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Batches are split along their leading axis over `data` and replicated over `model`."""
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def logical_to_sharding(boxed_tree: Any, mesh: Mesh, rules: LogicalAxisRules) -> Any:
  """NamedShardings for a tree of (possibly abstract) boxed values; unboxed leaves: replicated."""
  specs = nn.get_partition_spec(boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, list(rules))


def shardings_like(tree: Any, reference: Any, reference_shardings: Any, mesh: Mesh) -> Any:
  """Shardings for a tree (an optimizer state) whose leaves mirror parameters somewhere inside it.

  A leaf whose key path ends with a parameter's key path and has that parameter's shape inherits the
  parameter's sharding (Adam's moments, Adafactor's unfactored second moments); anything else
  (step counts, Adafactor's factored row/column statistics) is small and replicated.
  """
  ref_leaves = jax.tree_util.tree_flatten_with_path(reference)[0]
  ref_shardings = jax.tree_util.tree_leaves(
      reference_shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  by_path = {tuple(_key_name(k) for k in path): (np.shape(leaf), s)
             for (path, leaf), s in zip(ref_leaves, ref_shardings)}
  longest = max((len(p) for p in by_path), default=0)

  def pick(path, leaf):
    names = tuple(_key_name(k) for k in path)
    for start in range(max(0, len(names) - longest), len(names)):
      hit = by_path.get(names[start:])
      if hit is not None and tuple(hit[0]) == tuple(np.shape(leaf)):
        return hit[1]
    return replicated(mesh)

  return jax.tree_util.tree_map_with_path(pick, tree)


def _key_name(key) -> Any:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return getattr(key, attr)
  return str(key)
