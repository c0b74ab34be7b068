"""Batches from a SeqIO task or mixture: feature conversion, per-host sharding, deterministic order.

The training stream is a pure function of (task, split, lengths, batch size, seed, host shard): the
same seed gives the same batches in every run, so a restarted run resumes exactly by skipping the
batches its checkpoint says were consumed. Anything that implements `InputPipeline` (e.g. the
reranker's own data) plugs into the trainer through a config object with `make_input`.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from typing import Any, Iterator, Mapping, Protocol

import jax
import numpy as np
import seqio
import tensorflow as tf

# The input pipeline runs on the host; keep TensorFlow off accelerators JAX owns.
tf.config.set_visible_devices([], "GPU")

NumpyBatch = dict[str, np.ndarray]


class InputPipeline(abc.ABC):
  """Host-local batches plus the global shapes the trainer compiles for."""

  @property
  @abc.abstractmethod
  def element_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    """Global (all-host) shape and dtype of each batch feature."""

  @abc.abstractmethod
  def batches(self, start: int = 0) -> Iterator[NumpyBatch]:
    """This host's batches from the `start`-th on. Training streams are endless; evaluation streams
    end after one pass, their last batch padded with all-zero rows (which carry no loss weight)."""


class DatasetConfigLike(Protocol):
  """What `train` accepts as a dataset config: anything that can build an `InputPipeline`."""

  def make_input(self, feature_converter_cls: type[seqio.FeatureConverter] | None,
                 shard_info: seqio.ShardInfo, training: bool, seed: int) -> InputPipeline:
    ...


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """A SeqIO dataset, as T5X's `utils.DatasetConfig` describes one (global `batch_size`).

  `seed` None takes the run's seed. `module` is imported first so that its tasks are registered.
  `use_cached` reads the task(s) from SeqIO's offline cache (written by
  `python -m seqio.scripts.cache_tasks_main`, see README "Scaling out") found in `cache_dirs`
  (added to SeqIO's global cache directories; T5X's `--seqio_additional_cache_dirs`). The cache
  holds the same examples, in the order Beam wrote them: every epoch has the same examples as
  the uncached stream, in another order.
  """
  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  split: str = "train"
  batch_size: int = 8
  shuffle: bool = True
  seed: int | None = None
  pack: bool = True
  use_cached: bool = False
  module: str | None = None
  cache_dirs: tuple[str, ...] = ()

  def make_input(self, feature_converter_cls, shard_info, training, seed):
    if feature_converter_cls is None:
      raise ValueError(f"the model reads no SeqIO features; {self.mixture_or_task_name!r} "
                       "needs a model with a FEATURE_CONVERTER_CLS")
    return SeqioInput(self, feature_converter_cls, shard_info, training,
                      self.seed if self.seed is not None else seed)


def check_cached(name: str, cache_dirs=()) -> None:
  """Adds `cache_dirs` to SeqIO's cache directories; raises ValueError unless every task of the
  task or mixture `name` is cached in one of them (SeqIO would assert, or silently process a task
  that cannot be cached on the fly)."""
  new = [d for d in map(str, cache_dirs) if d not in seqio.get_global_cache_dirs()]
  if new:
    seqio.add_global_cache_dirs(new)
  provider = seqio.get_mixture_or_task(name)
  subtasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  for task in subtasks:
    if not task.supports_caching:
      raise ValueError(f"use_cached: task {task.name!r} cannot be cached (its preprocessors have "
                       "no seqio.CacheDatasetPlaceholder)")
    if not task.cache_dir:
      raise ValueError(
          f"use_cached: task {task.name!r} is not cached in any of {seqio.get_global_cache_dirs()}"
          " (cache_dirs); write it with `python -m seqio.scripts.cache_tasks_main "
          f"--module_import=tasks --tasks={task.name} --output_cache_dir=DIR` (README, "
          "\"Scaling out\")")


def local_batch_size(global_batch_size: int, shard_info: seqio.ShardInfo) -> int:
  if global_batch_size % shard_info.num_shards:
    raise ValueError(f"batch size {global_batch_size} is not divisible by the "
                     f"{shard_info.num_shards} input hosts")
  return global_batch_size // shard_info.num_shards


class SeqioInput(InputPipeline):
  """A SeqIO task/mixture through the model's feature converter, batched per host."""

  def __init__(self, cfg: DatasetConfig, feature_converter_cls: type[seqio.FeatureConverter],
               shard_info: seqio.ShardInfo, training: bool, seed: int):
    if cfg.module:
      importlib.import_module(cfg.module)
    if cfg.use_cached:
      check_cached(cfg.mixture_or_task_name, cfg.cache_dirs)
    self.cfg = cfg
    self.training = training
    self.seed = int(seed)
    self.shard_info = shard_info
    self.local_batch = local_batch_size(cfg.batch_size, shard_info)
    self._converter = feature_converter_cls(pack=cfg.pack)
    self._unused = self._examples()  # the first `batches` call iterates this one
    spec = self._unused.element_spec
    self._spec = {
        k: jax.ShapeDtypeStruct((cfg.batch_size,) + tuple(v.shape), v.dtype.as_numpy_dtype)
        for k, v in spec.items()}

  def _examples(self) -> tf.data.Dataset:
    return seqio.get_dataset(
        self.cfg.mixture_or_task_name, dict(self.cfg.task_feature_lengths),
        feature_converter=self._converter, dataset_split=self.cfg.split,
        use_cached=self.cfg.use_cached, shuffle=self.cfg.shuffle and self.training,
        num_epochs=None if self.training else 1, shard_info=self.shard_info,
        verbose=False, seed=self.seed)

  @property
  def element_spec(self):
    return dict(self._spec)

  def batches(self, start: int = 0) -> Iterator[NumpyBatch]:
    # Built afresh for every call: re-iterating one tf.data pipeline reshuffles it differently.
    ds = self._unused if self._unused is not None else self._examples()
    self._unused = None
    ds = ds.batch(self.local_batch, drop_remainder=self.training)
    if start:
      ds = ds.skip(start)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    for batch in ds.as_numpy_iterator():
      yield pad_batch(batch, self.local_batch)


def pad_batch(batch: Mapping[str, np.ndarray], size: int) -> NumpyBatch:
  """Pads the leading axis with zero rows up to `size` (an evaluation pass's last batch)."""
  out = {}
  for name, value in batch.items():
    value = np.asarray(value)
    missing = size - value.shape[0]
    if missing > 0:
      value = np.concatenate([value, np.zeros((missing,) + value.shape[1:], value.dtype)])
    out[name] = value
  return out


def make_global_batch(batch: Mapping[str, np.ndarray], shardings: Mapping[str, Any],
                      spec: Mapping[str, jax.ShapeDtypeStruct]) -> dict[str, jax.Array]:
  """Assembles each host's rows into global arrays split over the `data` mesh axis."""
  return {name: jax.make_array_from_process_local_data(shardings[name], np.asarray(value),
                                                       spec[name].shape)
          for name, value in batch.items()}
