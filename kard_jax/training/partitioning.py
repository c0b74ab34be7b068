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


# Environment variables read when a DistributedConfig field is unset (the first one set wins).
COORDINATOR_ENV = ("JAX_COORDINATOR_ADDRESS", "KARD_COORDINATOR")
NUM_PROCESSES_ENV = ("JAX_NUM_PROCESSES", "KARD_NUM_PROCESSES")
PROCESS_ID_ENV = ("JAX_PROCESS_ID", "KARD_PROCESS_ID")


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  """Multi-process settings: `jax.distributed.initialize` runs when `num_processes` > 1 or
  `auto_detect` is set (Cloud TPU pods, SLURM and other clusters JAX recognises: it is then called
  with no coordinates, as JAX documents for them).

  Unset fields come from the environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
  JAX_PROCESS_ID; the older KARD_COORDINATOR, KARD_NUM_PROCESSES, KARD_PROCESS_ID too).

  `heartbeat_timeout_s` bounds how long the survivors wait when a process dies: the coordination
  service then stops every process with "the JAX distributed service detected fatal errors"
  instead of leaving them blocked in a collective. `initialization_timeout_s` bounds the wait for
  all processes to join.
  """
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  auto_detect: bool = False
  heartbeat_timeout_s: int = 100
  initialization_timeout_s: int = 300
  shutdown_timeout_s: int = 60


def _env_first(names: Sequence[str]) -> tuple[str, str] | None:
  for name in names:
    value = os.environ.get(name)
    if value not in (None, ""):
      return name, value
  return None


def _env_int(names: Sequence[str]) -> int | None:
  hit = _env_first(names)
  if hit is None:
    return None
  name, value = hit
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def resolve_distributed(config: DistributedConfig | None = None) -> DistributedConfig | None:
  """`config` with unset fields filled from the environment; None for a single-process run.

  Raises ValueError for incomplete or inconsistent settings (naming what is missing).
  """
  config = config or DistributedConfig()
  num = config.num_processes if config.num_processes is not None else _env_int(NUM_PROCESSES_ENV)
  if not config.auto_detect and (num is None or num <= 1):
    if num is not None and num < 1:
      raise ValueError(f"the number of processes must be >= 1, got {num}")
    return None
  pid = config.process_id if config.process_id is not None else _env_int(PROCESS_ID_ENV)
  address = config.coordinator_address
  if address is None:
    hit = _env_first(COORDINATOR_ENV)
    address = hit[1] if hit else None
  if not config.auto_detect:
    missing = [name for name, value in (("coordinator address", address), ("process id", pid))
               if value is None]
    if missing:
      raise ValueError(f"{num} processes requested but no {' and no '.join(missing)} given "
                       f"(flags --coordinator_address/--process_id or the environment variables "
                       f"{COORDINATOR_ENV[0]}/{PROCESS_ID_ENV[0]})")
    if not 0 <= pid < num:
      raise ValueError(f"process id {pid} is outside [0, {num})")
    if ":" not in address:
      raise ValueError(f"coordinator address {address!r} must be HOST:PORT")
  for name in ("heartbeat_timeout_s", "initialization_timeout_s", "shutdown_timeout_s"):
    if int(getattr(config, name)) <= 0:
      raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
  return dataclasses.replace(config, coordinator_address=address, num_processes=num,
                             process_id=pid)


_DISTRIBUTED_READY = False


def maybe_initialize_distributed(config: DistributedConfig | None = None) -> bool:
  """Joins the process group once, before anything else touches the JAX backend.

  Returns whether this process is (now) one of several. A second call is a no-op.
  """
  global _DISTRIBUTED_READY
  if _DISTRIBUTED_READY:
    return True
  resolved = resolve_distributed(config)
  if resolved is None:
    return False
  jax.distributed.initialize(
      coordinator_address=resolved.coordinator_address, num_processes=resolved.num_processes,
      process_id=resolved.process_id,
      initialization_timeout=int(resolved.initialization_timeout_s),
      heartbeat_timeout_seconds=int(resolved.heartbeat_timeout_s),
      shutdown_timeout_seconds=int(resolved.shutdown_timeout_s))
  _DISTRIBUTED_READY = True
  return True


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


def host_shard_info(mesh: Mesh | None = None) -> seqio.ShardInfo:
  """The slice of the input this process reads.

  Without a mesh: one shard per process. With one, processes whose devices hold the same rows of
  the batch (the same positions along `data`) read the same shard: a model axis spanning two hosts
  makes them share one, so the global batch is what a single process would have assembled.
  """
  if mesh is None or jax.process_count() == 1:
    return seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())
  owners = np.vectorize(lambda d: d.process_index, otypes=[int])(mesh.devices)
  return shard_of_process(owners, mesh.axis_names.index("data"), jax.process_index())


def shard_of_process(owners: np.ndarray, data_axis: int, process: int) -> seqio.ShardInfo:
  """The input shard of `process`, given the process owning each mesh position (`owners`)."""
  rows: dict[int, set[int]] = {}
  for index, owner in np.ndenumerate(owners):
    rows.setdefault(int(owner), set()).add(index[data_axis])
  groups = sorted({tuple(sorted(r)) for r in rows.values()})
  flat = [i for g in groups for i in g]
  if len(flat) != len(set(flat)) or len({len(g) for g in groups}) != 1:
    raise ValueError(f"mesh of shape {owners.shape}: processes hold overlapping or unequal sets "
                     f"of batch rows {groups}; choose a mesh whose data axis splits evenly over "
                     f"the hosts")
  return seqio.ShardInfo(index=groups.index(tuple(sorted(rows[process]))),
                         num_shards=len(groups))


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
