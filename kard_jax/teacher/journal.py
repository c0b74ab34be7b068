"""An append-only record of every finished teacher call, so no paid call is ever made twice.

One JSON line per returned sample, written the moment its call finishes (flushed and fsync'd):
  {"id": EXAMPLE_ID, "prompt_hash": "3f2a...", "sample": 4, "text": "...", "finish_reason": "stop",
   "model": "gpt-4o-mini", "call": "<uuid>", "attempts": 1, "time": 1.7e9,
   "usage": {"prompt_tokens": .., "completion_tokens": ..}}
The key is (example id, prompt hash, sample index); the prompt hash covers the model and sampling
settings too (see prompts.request_hash), so changing any of them asks again instead of reusing
samples drawn under other settings. Several lines of one call share its `call` id; only the first
carries the call's `usage`, so summing usage over lines counts every token once.

A call that failed for good is recorded as
  {"id": .., "prompt_hash": .., "samples": [4, 5], "failure": "http_400: ...", "attempts": 1}
for the record only: a restart tries those samples again.

A process killed mid-write leaves at most a torn last line; opening the journal cuts it off (that
call was never recorded, so it is asked again). A lock keeps two runs from writing one journal.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
from typing import Any, Iterable, Mapping

from kard_jax.data.errors import InputError

Key = tuple[str, str, int]


def _fsync_dir(path: str) -> None:
  fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


class Journal:
  """Opens (creating, repairing and locking) the journal at `path`; use as a context manager."""

  def __init__(self, path):
    self.path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    created = not os.path.exists(self.path)
    self._file = open(self.path, "a+b")
    try:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.close()
      raise InputError(self.path, "journal is in use by another running `kard teach`") from None
    if created:
      _fsync_dir(self.path)
    self._lock = threading.Lock()
    self._by_prompt: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    self.failures: list[dict[str, Any]] = []
    self.duplicates = 0  # lines whose key was already recorded (never written by this class)
    self.repaired_bytes = self._load()

  def _load(self) -> int:
    """Reads every complete line; cuts a torn tail off the file. Returns the bytes cut."""
    self._file.seek(0)
    data = self._file.read()
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    # A last line that does not parse is the remains of an interrupted write too.
    if lines:
      try:
        json.loads(lines[-1])
      except (UnicodeDecodeError, json.JSONDecodeError):
        end -= len(lines[-1]) + 1
        lines.pop()
    for lineno, raw in enumerate(lines, start=1):
      if not raw.strip():
        continue
      try:
        obj = json.loads(raw)
      except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(self.path, f"corrupt journal line ({e})", lineno) from None
      if not isinstance(obj, dict) or "id" not in obj or "prompt_hash" not in obj:
        raise InputError(self.path, "journal line lacks 'id' or 'prompt_hash'", lineno)
      if "failure" in obj:
        self.failures.append(obj)
        continue
      if not self._add(obj):
        self.duplicates += 1
    cut = len(data) - end
    if cut:
      self._file.truncate(end)
      self._file.flush()
      os.fsync(self._file.fileno())
      print(f"[journal] {self.path}: dropped a torn last line ({cut} bytes) left by an "
            "interrupted run", file=sys.stderr)
    return cut

  def _add(self, entry: Mapping[str, Any]) -> bool:
    group = self._by_prompt.setdefault((str(entry["id"]), str(entry["prompt_hash"])), {})
    sample = int(entry["sample"])
    if sample in group:
      return False
    group[sample] = dict(entry)
    return True

  def __len__(self) -> int:
    with self._lock:
      return sum(len(g) for g in self._by_prompt.values())

  def keys(self) -> set[Key]:
    with self._lock:
      return {(i, h, s) for (i, h), g in self._by_prompt.items() for s in g}

  def done(self, example_id: str, prompt_hash: str) -> dict[int, dict[str, Any]]:
    """sample index -> entry, for the samples of this example and prompt already recorded."""
    with self._lock:
      return dict(self._by_prompt.get((example_id, prompt_hash), {}))

  def append(self, entries: Iterable[Mapping[str, Any]]) -> int:
    """Durably records sample entries (one write, flush, fsync). Returns how many were new."""
    with self._lock:
      fresh = [e for e in entries if self._add(e)]
      self._write(fresh)
      return len(fresh)

  def record_failure(self, entry: Mapping[str, Any]) -> None:
    with self._lock:
      self.failures.append(dict(entry))
      self._write([entry])

  def _write(self, objs: list[Mapping[str, Any]]) -> None:
    if not objs:
      return
    data = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode("utf-8")
    self._file.write(data)
    self._file.flush()
    os.fsync(self._file.fileno())

  def close(self) -> None:
    if not self._file.closed:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
      self._file.close()

  def __enter__(self) -> "Journal":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
