"""Provenance for every measured figure: who measured it, with what, where, under which load.

A results file is a JSON object whose `stamp` field says how to reproduce it:

  {"stamp": {"command": ..., "commit": ..., "dirty": ..., "versions": {...}, "device": {...},
             "load_avg_1m": {"before": ..., "after": ...}, "wall_s": ..., "written_utc": ...},
   ...the figures...}

Usage (a benchmark or a pipeline report):

  with Measurement(packages=("jax", "torch")) as m:
    figures = run_the_benchmark()
  write_results("results/bench_decode.json", {"figures": figures, ...}, m.stamp(threads={...}))

`missing_stamp_fields(obj)` lists what a results object lacks (a test runs it over results/).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import Any, Iterable, Mapping

from kard_jax.data.jsonl import atomic_open

REQUIRED_FIELDS = ("command", "commit", "dirty", "versions", "device", "load_avg_1m", "wall_s",
                   "written_utc")

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command_line(argv: Iterable[str] | None = None) -> str:
  """The command as a user would retype it (`sys.argv` by default, relative to the repo)."""
  argv = list(sys.argv if argv is None else argv)
  if argv and os.path.isabs(argv[0]) and argv[0].startswith(_REPO_ROOT + os.sep):
    argv[0] = os.path.relpath(argv[0], _REPO_ROOT)
  return shlex.join(argv)


def git_state(root: str = _REPO_ROOT) -> tuple[str, bool]:
  """(commit, dirty) of the checkout holding this package; ('unknown', True) outside git."""
  def run(*args: str) -> str:
    return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout
  try:
    commit = run("rev-parse", "HEAD").strip()
    # Tracked changes only: untracked scratch files do not change what the code computes.
    dirty = bool(run("status", "--porcelain", "--untracked-files=no").strip())
  except (OSError, subprocess.SubprocessError):
    return "unknown", True
  return commit, dirty


def package_versions(packages: Iterable[str]) -> dict[str, str]:
  versions = {"python": platform.python_version()}
  for name in packages:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = "not installed"
  return versions


def cpu_description() -> dict[str, Any]:
  """CPU model, logical cores and the vector extensions that change kernel choice."""
  model, flags = platform.processor() or platform.machine(), set()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model in ("", platform.machine(), platform.processor()):
          model = value.strip()
        elif key == "flags" and not flags:
          flags = set(value.split())
  except OSError:
    pass
  return {"cpu_model": model, "logical_cores": os.cpu_count(),
          "avx2": "avx2" in flags, "avx512f": "avx512f" in flags}


def accelerator_description() -> dict[str, Any] | None:
  """The JAX default backend's devices when JAX is already imported and not on CPU, else None."""
  jax = sys.modules.get("jax")
  if jax is None:
    return None
  try:
    devices = jax.devices()
  except RuntimeError:
    return None
  if not devices or devices[0].platform == "cpu":
    return None
  return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
          "count": len(devices)}


def device_description() -> dict[str, Any]:
  device = {"cpu": cpu_description()}
  accelerator = accelerator_description()
  if accelerator:
    device["accelerator"] = accelerator
  return device


def load_average_1m() -> float | None:
  try:
    return round(os.getloadavg()[0], 2)
  except OSError:
    return None


def utc_now() -> str:
  return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


class Measurement:
  """Times a block and records the load average before and after it."""

  def __init__(self, packages: Iterable[str] = ("jax", "jaxlib", "flax", "numpy"),
               argv: Iterable[str] | None = None):
    self.packages = tuple(packages)
    self.command = command_line(argv)
    self.load_before: float | None = None
    self.load_after: float | None = None
    self._start = self._end = None

  def __enter__(self) -> "Measurement":
    self.load_before = load_average_1m()
    self._start = time.perf_counter()
    return self

  def __exit__(self, *exc) -> None:
    self._end = time.perf_counter()
    self.load_after = load_average_1m()

  @property
  def wall_s(self) -> float:
    end = self._end if self._end is not None else time.perf_counter()
    return round(end - self._start, 3)

  def stamp(self, **extra: Any) -> dict[str, Any]:
    """The provenance stamp; `extra` (e.g. threads={"ours": 1, "reference": 1}) is added."""
    commit, dirty = git_state()
    stamp = {"command": self.command, "commit": commit, "dirty": dirty,
             "versions": package_versions(self.packages), "device": device_description(),
             "load_avg_1m": {"before": self.load_before, "after": self.load_after},
             "wall_s": self.wall_s, "written_utc": utc_now()}
    stamp.update(extra)
    return stamp


def write_results(path: str, payload: Mapping[str, Any], stamp: Mapping[str, Any]) -> dict:
  """Atomically writes `payload` with its `stamp` as pretty JSON; returns what was written."""
  obj = {"stamp": dict(stamp), **{k: v for k, v in payload.items() if k != "stamp"}}
  with atomic_open(path) as f:
    json.dump(obj, f, indent=2, ensure_ascii=False)
    f.write("\n")
  return obj


def missing_stamp_fields(obj: Mapping[str, Any]) -> list[str]:
  """The required stamp fields a results object lacks (empty when it is fully stamped)."""
  stamp = obj.get("stamp")
  if not isinstance(stamp, Mapping):
    return ["stamp"]
  return [field for field in REQUIRED_FIELDS if field not in stamp]
