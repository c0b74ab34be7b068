"""Per-passage token arrays (WordPiece ids or encoder states), computed once and cached on disk.

Late interaction needs every candidate passage's token vectors. They do not depend on the
question, so they are computed once per (knowledge base, encoder, max length), stored flat with an
offset table (a passage of 20 tokens takes 20 rows, not `max_length`) and gathered into padded
[B, K, P, ...] blocks per batch. Encoding sorts passages by length so each encoder batch is padded
only to its own longest passage (a 2-3x saving on short Wikipedia sentences).

Cache layout: DIR/<key>/{values.npy, offsets.npy, positions.npy, meta.json}, written to a temporary
directory and renamed, so a killed run never leaves a half cache; `key` hashes everything the
values depend on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from kard_jax.data.errors import InputError


class TokenTable:
  """Variable-length token arrays of some passages, addressed by their index positions."""

  def __init__(self, positions: np.ndarray, offsets: np.ndarray, values: np.ndarray):
    positions = np.asarray(positions, np.int64)
    if len(offsets) != len(positions) + 1 or int(offsets[-1]) != len(values):
      raise ValueError("offsets do not fit positions and values")
    self.positions, self.offsets, self.values = positions, np.asarray(offsets, np.int64), values
    self._row = {int(p): i for i, p in enumerate(positions.tolist())}

  def __len__(self) -> int:
    return len(self.positions)

  def __contains__(self, position: int) -> bool:
    return int(position) in self._row

  @property
  def feature_shape(self) -> tuple[int, ...]:
    return tuple(self.values.shape[1:])

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)

  def get(self, position: int) -> np.ndarray:
    row = self._row.get(int(position))
    if row is None:
      raise KeyError(f"passage position {position} is not in this table")
    return self.values[self.offsets[row]:self.offsets[row + 1]]

  def gather(self, positions: np.ndarray, length: int,
             valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Padded (values [..., length, *feature], mask [..., length] int32) for an array of positions.

    Entries where `valid` is False (padding candidates) are all zeros with an empty mask.
    """
    positions = np.asarray(positions)
    valid = np.ones(positions.shape, bool) if valid is None else np.asarray(valid, bool)
    out = np.zeros(positions.shape + (length,) + self.feature_shape, self.values.dtype)
    mask = np.zeros(positions.shape + (length,), np.int32)
    flat_out = out.reshape((-1, length) + self.feature_shape)
    flat_mask = mask.reshape(-1, length)
    for i, (p, ok) in enumerate(zip(positions.reshape(-1).tolist(), valid.reshape(-1).tolist())):
      if not ok:
        continue
      v = self.get(p)[:length]
      flat_out[i, :len(v)] = v
      flat_mask[i, :len(v)] = 1
    return out, mask

  # --- disk ------------------------------------------------------------------------------------

  def save(self, directory: str, meta: Mapping[str, Any]) -> None:
    """Writes the table atomically into `directory` (replacing nothing that exists)."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tokens.", suffix=".tmp", dir=parent)
    try:
      np.save(os.path.join(tmp, "values.npy"), self.values)
      np.save(os.path.join(tmp, "offsets.npy"), self.offsets)
      np.save(os.path.join(tmp, "positions.npy"), self.positions)
      with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(dict(meta), f, indent=1, sort_keys=True)
      if os.path.isdir(directory):  # another process finished the same cache first
        shutil.rmtree(tmp)
        return
      os.replace(tmp, directory)
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise

  @classmethod
  def load(cls, directory: str, mmap: bool = True) -> "TokenTable":
    try:
      mode = "r" if mmap else None
      values = np.load(os.path.join(directory, "values.npy"), mmap_mode=mode)
      offsets = np.load(os.path.join(directory, "offsets.npy"))
      positions = np.load(os.path.join(directory, "positions.npy"))
      return cls(positions, offsets, values)
    except (OSError, ValueError) as e:
      raise InputError(directory, f"unreadable passage cache ({e}); delete it to rebuild") from None


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
  """WordPiece ids with [CLS]/[SEP], truncated to `max_length`, unpadded."""
  tokenizer.no_padding()
  tokenizer.enable_truncation(max_length=max_length)
  return [np.asarray(e.ids, np.int32) for e in tokenizer.encode_batch(list(texts))]


def id_table(positions: Sequence[int], token_ids: Sequence[np.ndarray]) -> TokenTable:
  offsets = np.concatenate([[0], np.cumsum([len(t) for t in token_ids])]).astype(np.int64)
  values = np.concatenate(token_ids).astype(np.int32) if token_ids else np.zeros(0, np.int32)
  return TokenTable(np.asarray(positions, np.int64), offsets, values)


def encode_table(ids: TokenTable, encode_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                 batch_size: int = 64, bucket: int = 16, dtype: Any = np.float16,
                 show_progress: bool = True, desc: str = "encode passages") -> TokenTable:
  """Per-token outputs of `encode_fn` for every passage of a table, stored as `dtype`.

  Maps ids [L_i] (or states [L_i, H]) to vectors [L_i, D]:
  `encode_fn(x [b, l, ...], mask [b, l]) -> [b, l, D]` sees batches sorted by length, padded
  to a multiple of `bucket` tokens (few distinct shapes, so few compilations) and to `batch_size`
  rows.
  """
  from tqdm.auto import tqdm

  lengths = ids.lengths()
  order = np.argsort(lengths, kind="stable")
  chunks: list[np.ndarray | None] = [None] * len(ids)
  with tqdm(total=len(ids), desc=desc, unit=" passages", disable=not show_progress,
            mininterval=2.0) as bar:
    for s in range(0, len(order), batch_size):
      rows = order[s:s + batch_size]
      width = int(-(-max(int(lengths[rows].max()), 1) // bucket) * bucket)
      batch = np.zeros((batch_size, width) + ids.feature_shape, ids.values.dtype)
      mask = np.zeros((batch_size, width), np.int32)
      for j, r in enumerate(rows.tolist()):
        v = ids.values[ids.offsets[r]:ids.offsets[r + 1]]
        batch[j, :len(v)], mask[j, :len(v)] = v, 1
      states = np.asarray(encode_fn(batch, mask))
      for j, r in enumerate(rows.tolist()):
        chunks[r] = states[j, :lengths[r]].astype(dtype)
      bar.update(len(rows))
  values = (np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype))
  return TokenTable(ids.positions, ids.offsets, values)


def concat(tables: Sequence[TokenTable]) -> TokenTable:
  """One table holding every passage of `tables` (the first occurrence of a position wins)."""
  tables = [t for t in tables if len(t)]
  if len(tables) == 1:
    return tables[0]
  if not tables:
    return TokenTable(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int32))
  positions, chunks, seen = [], [], set()
  for t in tables:
    for i, p in enumerate(t.positions.tolist()):
      if p not in seen:
        seen.add(p)
        positions.append(p)
        chunks.append(t.values[t.offsets[i]:t.offsets[i + 1]])
  offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
  return TokenTable(np.asarray(positions, np.int64), offsets, np.concatenate(chunks))


def subset(table: TokenTable, positions: np.ndarray) -> TokenTable:
  """The rows of `table` for `positions` (each must be in it), in that order."""
  chunks = [np.asarray(table.get(p)) for p in np.asarray(positions).tolist()]
  offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
  values = (np.concatenate(chunks) if chunks
            else np.zeros((0,) + table.feature_shape, table.values.dtype))
  return TokenTable(np.asarray(positions, np.int64), offsets, values)


def _key(obj: Any) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached(cache_dir: str | None, parts: Mapping[str, Any], positions: np.ndarray,
           compute: Callable[[np.ndarray], TokenTable]) -> TokenTable:
  """A table covering `positions` for the settings `parts`, computing only what is not cached.

  The cache is DIR/<hash of parts>/shard-<hash of positions>/: each call that finds passages
  missing computes just those (`compute(missing_positions)`) and adds them as a new shard, so
  training, evaluation and inference over overlapping candidate sets share one encoding pass.
  """
  positions = np.unique(np.asarray(positions, np.int64))
  if cache_dir is None:
    return compute(positions)
  root = os.path.join(cache_dir, _key(dict(parts)))
  shards = []
  if os.path.isdir(root):
    for name in sorted(os.listdir(root)):
      if name.startswith("shard-") and os.path.isfile(os.path.join(root, name, "meta.json")):
        shards.append(TokenTable.load(os.path.join(root, name)))
  have = concat(shards) if shards else None
  missing = positions if have is None else np.asarray(
      [p for p in positions.tolist() if p not in have], np.int64)
  if len(missing):
    table = compute(missing)
    shard = os.path.join(root, f"shard-{_key(missing.tobytes().hex())}")
    table.save(shard, {**parts, "passages": len(table)})
    shards.append(TokenTable.load(shard))
    have = concat(shards)
  return have
