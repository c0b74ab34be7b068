"""Passages: the unit of retrieval, their jsonl file, and random access to them on disk.

A knowledge base after ingestion is `kb/passages.jsonl`, one `{"id", "title", "text"}` per line.
An index keeps its own copy plus a byte-offset table, so a passage is read by position without
loading millions of them into memory (the file is memory-mapped).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import os
from typing import Iterable, Iterator

import numpy as np

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError


@dataclasses.dataclass(frozen=True)
class Passage:
  id: str
  title: str
  text: str

  def to_json(self) -> dict[str, str]:
    return {"id": self.id, "title": self.title, "text": self.text}

  def index_text(self, with_title: bool = True) -> str:
    """The text BM25 sees: the title prepended (as DPR and pyserini's Wikipedia indexes do)."""
    if with_title and self.title:
      return f"{self.title}\n{self.text}"
    return self.text


def passage_from_json(obj: dict, path, line: int | None) -> Passage:
  """Checks one kb/passages.jsonl object; ids must be non-empty single-line strings."""
  pid = obj.get("id")
  if pid is None or (isinstance(pid, str) and not pid.strip()):
    raise InputError(path, "passage without an id", line)
  if not isinstance(pid, (str, int)) or isinstance(pid, bool):
    raise InputError(path, f"passage id must be a string or integer, got {type(pid).__name__}",
                     line)
  pid = str(pid)
  if "\n" in pid or "\r" in pid:
    raise InputError(path, f"passage id {pid!r} contains a line break", line)
  text = obj.get("text")
  if not isinstance(text, str):
    raise InputError(path, f"passage {pid!r}: 'text' must be a string", line)
  title = obj.get("title") or ""
  if not isinstance(title, str):
    raise InputError(path, f"passage {pid!r}: 'title' must be a string", line)
  return Passage(pid, title, text)


def read_passages(path) -> Iterator[Passage]:
  """Streams a kb/passages.jsonl file."""
  for lineno, obj in jsonl.iter_jsonl(path):
    yield passage_from_json(obj, path, lineno)


def write_passages(path, passages: Iterable[Passage]) -> int:
  return jsonl.write_jsonl(path, (p.to_json() for p in passages))


_encode_string = json.encoder.encode_basestring  # C-accelerated JSON string literal

PASSAGES_FILE = "passages.jsonl"
OFFSETS_FILE = "passages.offsets.npy"
IDS_FILE = "passages.ids.json"  # the ids alone, so the id -> position table loads fast


class PassageWriter:
  """Writes an index's passages file, recording line offsets and a sha256 of the bytes.

  Rejects a repeated passage id: positions and ids must be one-to-one for retrieval files.
  """

  def __init__(self, directory: str, source: str = "<passages>", also_hash=None):
    self.directory = directory
    self._also_hash = also_hash  # a hashlib object fed the same bytes (a sharded corpus's)
    self.source = source
    self._f = open(os.path.join(directory, PASSAGES_FILE), "wb")
    self._offsets = [0]
    self._sha = hashlib.sha256()
    self._ids: list[str] = []
    self._seen: set[str] = set()

  def add(self, passage: Passage) -> None:
    if passage.id in self._seen:
      raise InputError(self.source, f"duplicate passage id {passage.id!r}")
    self._seen.add(passage.id)
    self._ids.append(passage.id)
    enc = _encode_string  # what json.dumps(passage.to_json(), ensure_ascii=False) writes, faster
    line = (f'{{"id": {enc(passage.id)}, "title": {enc(passage.title)}, '
            f'"text": {enc(passage.text)}}}\n').encode("utf-8")
    self._f.write(line)
    self._sha.update(line)
    if self._also_hash is not None:
      self._also_hash.update(line)
    self._offsets.append(self._offsets[-1] + len(line))

  def __len__(self) -> int:
    return len(self._offsets) - 1

  def close(self) -> str:
    """Finishes the files; returns the sha256 of the passages file."""
    self._f.close()
    np.save(os.path.join(self.directory, OFFSETS_FILE), np.asarray(self._offsets, np.int64))
    with open(os.path.join(self.directory, IDS_FILE), "w", encoding="utf-8") as f:
      json.dump(self._ids, f, ensure_ascii=False)
    self._seen.clear()
    self._ids.clear()
    return self._sha.hexdigest()


class PassageStore:
  """Read-only random access to an index's passages by position (0..n-1) or by id."""

  def __init__(self, directory: str):
    self.directory = directory
    path = os.path.join(directory, PASSAGES_FILE)
    self._path = path
    try:
      self._offsets = np.load(os.path.join(directory, OFFSETS_FILE), mmap_mode="r")
    except (OSError, ValueError) as e:
      raise InputError(os.path.join(directory, OFFSETS_FILE), f"unreadable offsets ({e})") from None
    size = os.path.getsize(path)
    if self._offsets.ndim != 1 or len(self._offsets) < 1 or int(self._offsets[-1]) != size:
      raise InputError(path, "passages file does not match its offsets table (truncated or "
                       "modified); rebuild the index")
    self._file = open(path, "rb")
    self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    self._positions: dict[str, int] | None = None

  def __len__(self) -> int:
    return len(self._offsets) - 1

  def __getitem__(self, i: int) -> Passage:
    i = int(i)
    if not 0 <= i < len(self):
      raise IndexError(i)
    start, end = int(self._offsets[i]), int(self._offsets[i + 1])
    try:
      return passage_from_json(json.loads(self._mm[start:end]), self._path, i + 1)
    except json.JSONDecodeError as e:
      raise InputError(self._path, f"corrupt passage line ({e.msg})", i + 1) from None

  def __iter__(self) -> Iterator[Passage]:
    return (self[i] for i in range(len(self)))

  def position(self, passage_id: str) -> int:
    """The position of a passage id; builds the id table on first use."""
    if self._positions is None:
      path = os.path.join(self.directory, IDS_FILE)
      try:
        with open(path, encoding="utf-8") as f:
          ids = json.load(f)
      except (OSError, ValueError) as e:
        raise InputError(path, f"unreadable passage ids ({e})") from None
      if len(ids) != len(self):
        raise InputError(path, f"{len(ids)} ids for {len(self)} passages; rebuild the index")
      self._positions = {pid: i for i, pid in enumerate(ids)}
    try:
      return self._positions[passage_id]
    except KeyError:
      raise KeyError(f"passage id {passage_id!r} is not in the index at {self.directory}") from None

  def close(self) -> None:
    if isinstance(self._mm, mmap.mmap):
      self._mm.close()
    self._file.close()
