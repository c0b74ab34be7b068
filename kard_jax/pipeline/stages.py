"""Content-addressed stage outputs: a stage's directory is named by what it was made from.

Every stage of the pipeline (data, vocabulary, index, rationales, retrieval, reranker, training,
evaluation) writes into `WORK/stages/<stage>/<key>/`, where

  key = sha256(stage name, stage version, its config as canonical JSON,
               the content hash of every input, by input name)

Inputs are other stages' outputs (`Artifact`s, whose content hash is recorded when they finish)
or files outside the work directory (`source_file`, hashed by content). A stage has finished when
its `DONE.json` exists: this manifest is written atomically, last, and holds the key, the config, the
input hashes, the output's own content hash and the time taken. So:

  * a finished stage is skipped, whatever order stages are run in;
  * changing a config value or any upstream content gives a new key, hence a fresh directory, and
    every stage downstream of the change (and only those) runs again;
  * a stage re-run with the same inputs and a deterministic output gets the same content hash, so
    its dependants are still reused;
  * a killed stage leaves a directory without a manifest; the next run calls the stage again in
    the same directory, so work that checkpoints itself (training) resumes.

Outdated directories are never deleted automatically; they cost disk, never correctness.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import sys
import time
from typing import Any, Callable, Iterable, Mapping

from kard_jax.data.errors import InputError
from kard_jax.data import jsonl
from kard_jax.data.jsonl import atomic_open

MANIFEST = "DONE.json"  # the finished-marker and manifest in one, written last
KEY_CHARS = 16  # hex digits of the key used in directory names (64 bits)
# Files that differ between identical runs (timestamps, logs) and do not define the content.
VOLATILE_PREFIXES = ("events.out.tfevents", "progress.log")
_HASH_CACHE = ".hash_cache.json"


class MissingStage(RuntimeError):
  """A stage that was not allowed to run (see `Store.runnable`) has no finished output."""


@dataclasses.dataclass(frozen=True)
class Artifact:
  """A finished stage output (or a hashed source file): where it is and what it holds."""
  stage: str
  path: str
  content_hash: str
  key: str = ""
  reused: bool = False

  def file(self, *parts: str) -> str:
    return os.path.join(self.path, *parts)


def canonical_json(value: Any) -> str:
  """JSON with sorted keys and no whitespace: equal values give equal strings (and hashes)."""
  return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                    default=_json_default)


def _json_default(value: Any) -> Any:
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return dataclasses.asdict(value)
  if isinstance(value, (set, frozenset)):
    return sorted(value)
  if isinstance(value, tuple):
    return list(value)
  raise TypeError(f"{type(value).__name__} is not part of a stage config: {value!r}")


def _is_volatile(name: str) -> bool:
  return name == MANIFEST or name.startswith(VOLATILE_PREFIXES) or name.endswith(".tmp")


def tree_files(path: str) -> list[str]:
  """Relative paths of the files under `path` that define its content, sorted.

  Symbolic links inside a stage directory point at other stages' outputs (inputs arranged in
  the layout a command expects); they are not this stage's content and are skipped.
  """
  if os.path.isfile(path):
    return [""]
  out = []
  for root, dirs, files in os.walk(path):
    dirs.sort()
    for name in files:
      full = os.path.join(root, name)
      if not _is_volatile(name) and not os.path.islink(full):
        out.append(os.path.relpath(full, path))
  return sorted(out)


def hash_tree(path: str, cache: "HashCache | None" = None) -> str:
  """sha256 over (relative path, file sha256) of every non-volatile file; a file hashes alone."""
  h = hashlib.sha256()
  for rel in tree_files(path):
    full = os.path.join(path, rel) if rel else path
    digest = cache.file_hash(full) if cache else jsonl.sha256_file(full)
    h.update(f"{rel}\0{digest}\n".encode())
  return h.hexdigest()


class HashCache:
  """File hashes remembered by (path, size, mtime), so large source files are read once."""

  def __init__(self, path: str | None):
    self._path = path
    self._table: dict[str, list] = {}
    if path and os.path.exists(path):
      try:
        with open(path, encoding="utf-8") as f:
          self._table = json.load(f)
      except (OSError, json.JSONDecodeError):
        self._table = {}
    self._dirty = False

  def file_hash(self, path: str) -> str:
    path = os.path.abspath(path)
    st = os.stat(path)
    entry = self._table.get(path)
    if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
      return entry[2]
    digest = jsonl.sha256_file(path)
    self._table[path] = [st.st_size, st.st_mtime_ns, digest]
    self._dirty = True
    return digest

  def save(self) -> None:
    if self._path and self._dirty:
      with atomic_open(self._path) as f:
        json.dump(self._table, f)
      self._dirty = False


def stage_key(stage: str, version: int, config: Any, inputs: Mapping[str, Artifact]) -> str:
  payload = canonical_json({"stage": stage, "version": version, "config": config,
                            "inputs": {k: v.content_hash for k, v in sorted(inputs.items())}})
  return hashlib.sha256(payload.encode()).hexdigest()


def read_manifest(path: str) -> dict[str, Any] | None:
  """The manifest of a finished stage directory, or None when the stage has not finished."""
  try:
    with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except json.JSONDecodeError as e:
    raise InputError(os.path.join(path, MANIFEST), f"corrupt stage manifest ({e})") from None


def matches(stage: str, names: Iterable[str]) -> bool:
  """Whether `stage` ("train/kard_bm25" or "synthetic_e100/train/kard_bm25") is named by `names`:
  by its full name, its family ("train"), or its family and method ("train/kard_bm25")."""
  parts = stage.split("/")
  names = set(names)
  return any("/".join(parts[i:j]) in names for i in range(len(parts))
             for j in range(i + 1, len(parts) + 1))


StageFn = Callable[[str], Mapping[str, Any] | None]


class Store:
  """Runs stages into content-addressed directories under `root`/stages and records them.

  `runnable`: stage names allowed to run (None: all). Any other stage must already be finished;
  `run` then only looks it up and raises `MissingStage` when it is not. `force`: stage names
  to run again even when finished (their new output replaces the old manifest).
  """

  def __init__(self, root: str, *, runnable: Iterable[str] | None = None,
               force: Iterable[str] = (), log: Callable[[str], None] | None = None):
    self.root = os.path.abspath(root)
    self.runnable = None if runnable is None else set(runnable)
    self.force = set(force)
    self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    self.hashes = HashCache(os.path.join(self.root, _HASH_CACHE))
    self.records: list[dict[str, Any]] = []  # one per stage visited, in order
    self.skipped: list[str] = []  # why work was left out (stages outside `runnable`)

  def stage_dir(self, stage: str, key: str) -> str:
    return os.path.join(self.root, "stages", stage, key[:KEY_CHARS])

  def source(self, path: str, name: str = "source") -> Artifact:
    """An input from outside the work directory (a file or a directory), hashed by content."""
    if not os.path.exists(path):
      raise InputError(path, "file not found")
    digest = hash_tree(path, self.hashes)
    self.hashes.save()
    return Artifact(name, os.path.abspath(path), digest, reused=True)

  def allowed(self, stage: str) -> bool:
    return self.runnable is None or matches(stage, self.runnable)

  def forced(self, stage: str) -> bool:
    return matches(stage, self.force)

  def run(self, stage: str, fn: StageFn, *, config: Any = None,
          inputs: Mapping[str, Artifact] | None = None, version: int = 1) -> Artifact:
    """Returns the finished output of `stage` for (config, inputs), running `fn(out_dir)` if needed.

    `fn` writes its files into out_dir (it may find a previous, unfinished attempt's files there)
    and may return a small JSON-able summary, stored in the manifest under "summary".
    """
    inputs = dict(inputs or {})
    key = stage_key(stage, version, config, inputs)
    out = self.stage_dir(stage, key)
    manifest = read_manifest(out)
    if manifest is not None and manifest.get("key") == key and not self.forced(stage):
      self.log(f"[{stage}] reused {os.path.relpath(out, self.root)}")
      self.records.append({"stage": stage, "dir": out, "status": "reused",
                           "seconds": manifest.get("seconds", 0.0)})
      return Artifact(stage, out, manifest["content_hash"], key, reused=True)
    if not self.allowed(stage):
      raise MissingStage(f"stage {stage!r} has not finished for this configuration (expected "
                         f"{out}); run it first, e.g. without --only")
    if self.forced(stage) and os.path.isdir(out):
      shutil.rmtree(out)  # a forced stage starts from nothing (no resuming a finished run)
    os.makedirs(out, exist_ok=True)
    self.log(f"[{stage}] running -> {os.path.relpath(out, self.root)}")
    start = time.time()
    summary = fn(out)
    seconds = time.time() - start
    content = hash_tree(out)
    record = {
        "stage": stage, "key": key, "version": version, "config": config,
        "inputs": {k: {"stage": v.stage, "path": v.path, "content_hash": v.content_hash}
                   for k, v in sorted(inputs.items())},
        "content_hash": content, "files": len(tree_files(out)), "seconds": round(seconds, 3),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "summary": summary if summary is not None else {},
    }
    with atomic_open(os.path.join(out, MANIFEST)) as f:
      f.write(json.dumps(record, indent=2, sort_keys=True, default=_json_default) + "\n")
    self.log(f"[{stage}] done in {seconds:.1f}s")
    self.records.append({"stage": stage, "dir": out, "status": "ran", "seconds": seconds})
    return Artifact(stage, out, content, key, reused=False)

  def summary(self, artifact: Artifact) -> dict[str, Any]:
    """The summary a finished stage returned (from its manifest)."""
    manifest = read_manifest(artifact.path) or {}
    return manifest.get("summary", {})
