"""What one process would read if it fed the whole global batch of an N-process run.

An N-process run's global batch is the concatenation of the N hosts' local batches, each read from
the host's own input shard (`ShardInfo(i, N)`). `ShardUnion` reads all N shards in one process and
concatenates their batches in host order, so a single-process run trains on exactly the batches a
multi-process run does. Gin: `train_script.train.train_dataset_cfg = @shard_union.ShardUnion()`.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
import seqio

from kard_jax.training import input_pipeline


@dataclasses.dataclass(frozen=True)
class ShardUnion:
  inner: input_pipeline.DatasetConfig
  num_shards: int = 2

  def make_input(self, feature_converter_cls, shard_info, training, seed):
    assert shard_info.num_shards == 1, "ShardUnion stands in for several hosts in one process"
    return _UnionInput([self.inner.make_input(feature_converter_cls,
                                              seqio.ShardInfo(i, self.num_shards), training, seed)
                        for i in range(self.num_shards)])


class _UnionInput(input_pipeline.InputPipeline):

  def __init__(self, parts: list[input_pipeline.InputPipeline]):
    self._parts = parts

  @property
  def element_spec(self):
    return self._parts[0].element_spec  # global shapes: the same for every host

  def batches(self, start: int = 0) -> Iterator[input_pipeline.NumpyBatch]:
    for pieces in zip(*(p.batches(start) for p in self._parts)):
      yield {k: np.concatenate([piece[k] for piece in pieces]) for k in pieces[0]}
