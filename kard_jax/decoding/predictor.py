"""A trained student, ready to decode: checkpoint and model restored, one compiled decode function.

Inputs are token arrays of any lengths; they are padded to fixed [batch_size, length] blocks (zero
rows fill the last block) so that one compilation serves a whole split. Row i of a call always
decodes with the key `fold_in(PRNGKey(seed), i // batch_size)`, so a run is reproducible.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from kard_jax.decoding import adapters


@dataclasses.dataclass(frozen=True)
class Outputs:
  """The decodes of one input: `tokens` [N, L] (EOS included, PAD after), `scores` [N], `lengths` [N]."""
  tokens: np.ndarray
  scores: np.ndarray
  lengths: np.ndarray

  def sequences(self) -> list[list[int]]:
    """Each decode's tokens up to (not including) EOS."""
    out = []
    for row, n in zip(self.tokens, self.lengths):
      seq = [int(t) for t in row[:int(n)]]
      if seq and seq[-1] == adapters.decode_lib.EOS_ID:
        seq = seq[:-1]
      out.append(seq)
    return out


def _round_up(n: int, multiple: int) -> int:
  return max(multiple, -(-n // multiple) * multiple)


class Predictor:
  """Restores `model_dir`'s newest checkpoint and decodes token inputs with `config`."""

  def __init__(self, model_dir: str, config: adapters.DecodeConfig, *, batch_size: int = 16,
               mesh: Mesh | None = None, rules: Any = None, seed: int = 0):
    from kard_jax.training import checkpoints, models as models_lib, partitioning

    self.config = config
    self.batch_size = int(batch_size)
    self.seed = int(seed)
    self.mesh = mesh if mesh is not None else partitioning.create_mesh((-1, 1))
    data_size = self.mesh.shape["data"]
    if self.batch_size % data_size:
      raise ValueError(f"batch size {self.batch_size} must be a multiple of the mesh's data axis "
                       f"({data_size})")
    rules = list(rules) if rules is not None else partitioning.standard_logical_axis_rules()
    self.description = checkpoints.read_model_config(model_dir)
    self.family = self.description["family"]
    self.module = models_lib.model_from_description(self.description).module
    self.params, self.step = checkpoints.latest_params(model_dir, mesh=self.mesh, rules=rules)
    shardings = jax.tree.map(lambda x: x.sharding, self.params)
    self._generate = adapters.make_generate_fn(self.family, self.module, config, mesh=self.mesh,
                                               rules=rules, param_shardings=shardings)

  def padded_length(self, inputs: Sequence[np.ndarray]) -> int:
    """The input width used for a set of inputs: the longest, rounded up to a multiple of 16."""
    return _round_up(max((len(x) for x in inputs), default=1), 16)

  def iter_outputs(self, inputs: Sequence[np.ndarray],
                   length: int | None = None) -> Iterator[list[Outputs]]:
    """Yields, per block of `batch_size` inputs, the `Outputs` of each input in the block."""
    length = length or self.padded_length(inputs)
    key = jax.random.PRNGKey(self.seed)
    for block, start in enumerate(range(0, len(inputs), self.batch_size)):
      rows = inputs[start:start + self.batch_size]
      batch = np.zeros((self.batch_size, length), np.int32)
      for i, row in enumerate(rows):
        if len(row) > length:
          raise ValueError(f"input of {len(row)} tokens exceeds the padded length {length}")
        batch[i, :len(row)] = row
      result = jax.device_get(self._generate(self.params, batch, jax.random.fold_in(key, block)))
      yield [Outputs(np.asarray(result.tokens[i]), np.asarray(result.scores[i]),
                     np.asarray(result.lengths[i])) for i in range(len(rows))]

  def predict(self, inputs: Sequence[np.ndarray], length: int | None = None) -> list[Outputs]:
    return [o for block in self.iter_outputs(inputs, length) for o in block]
