"""JSON-lines reading with line-numbered errors, crash-safe writing, and file checksums."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Any, Iterable, Iterator

from kard_jax.data.errors import InputError


def iter_jsonl(path) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields (line_number, object) for each non-blank line; streams the file."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise InputError(path, "file not found")
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON ({e.msg} at column {e.colno})", lineno) from None
      if not isinstance(obj, dict):
        raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", lineno)
      yield lineno, obj


def read_jsonl(path) -> list[dict[str, Any]]:
  return [obj for _, obj in iter_jsonl(path)]


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", encoding: str | None = "utf-8"):
  """Opens a temporary file beside `path`; renames it over `path` only on success.

  A crash mid-write leaves the previous file (or none) in place, never half a file.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def write_jsonl(path, objects: Iterable[dict[str, Any]]) -> int:
  """Atomically writes objects as JSON lines; returns how many were written."""
  n = 0
  with atomic_open(path) as f:
    for obj in objects:
      f.write(json.dumps(obj, ensure_ascii=False) + "\n")
      n += 1
  return n


def sha256_file(path) -> str:
  """The hex SHA-256 of a file's bytes, read in 4 MiB blocks (never whole into memory)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      h.update(block)
  return h.hexdigest()
