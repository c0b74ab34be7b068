"""What a benchmark writes (results/bench_NAME.json) and how the README renders it.

Each `bench/NAME.py` measures ours and a reference in one run and calls `finish`, which writes

  {"stamp": {... provenance, plus "threads": {side: count}},
   "bench": NAME, "setup": "what ran: model shape, batch, dtype, ...",
   "headline": {"ratio": r, "ratio_is": "...", "fraction_of_limit": f, "limit_is": "..."},
   "figures": {name: value, ...every figure the bench printed...},
   "about": {name: "what that figure is"},
   "limits": {...this machine's measured bandwidth / matmul rate, when the bench measured them}}

atomically, and prints the headline as the last stdout line (one JSON object). `render` turns such
a file into the README's table; nothing in the README's benchmark section is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Mapping

from kard_jax.report import stamp as stamp_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def add_flags(parser: argparse.ArgumentParser, name: str) -> None:
  parser.add_argument("--out", default=os.path.join(REPO_ROOT, "results", f"bench_{name}.json"),
                      help="results file to write (default: results/bench_%(name)s.json)"
                      .replace("%(name)s", name))
  parser.add_argument("--tiny", action="store_true",
                      help="a seconds-long configuration (tests); its figures mean nothing")


def command_argv(script: str, argv: list[str] | None = None) -> list[str]:
  """The benchmark's command line as typed from the repository root: `python bench/X.py ...`."""
  script = os.path.abspath(script)
  if script.startswith(REPO_ROOT + os.sep):
    script = os.path.relpath(script, REPO_ROOT)
  return ["python", script, *(sys.argv[1:] if argv is None else argv)]


def measurement(packages: tuple[str, ...], script: str,
                argv: list[str] | None = None) -> stamp_lib.Measurement:
  """Starts the clock and the load reading of a benchmark run by `python SCRIPT ARGV...`."""
  return stamp_lib.Measurement(packages=("numpy", *packages),
                               argv=command_argv(script, argv)).__enter__()


def _clean(value: Any) -> Any:
  if isinstance(value, float):
    return None if not math.isfinite(value) else float(f"{value:.6g}")
  if isinstance(value, dict):
    return {k: _clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_clean(v) for v in value]
  if hasattr(value, "item"):  # numpy scalars
    return _clean(value.item())
  return value


def finish(name: str, out: str, m: stamp_lib.Measurement, *, setup: str, headline: Mapping,
           figures: Mapping[str, Any], about: Mapping[str, str], threads: Mapping[str, int],
           limits: Mapping[str, Any] | None = None) -> dict:
  """Writes results/bench_NAME.json (atomically) and prints the headline as the last line."""
  for key in ("ratio", "ratio_is", "fraction_of_limit", "limit_is"):
    if key not in headline:
      raise ValueError(f"bench {name}: headline lacks {key!r}")
  undocumented = sorted(set(figures) - set(about))
  if undocumented:
    raise ValueError(f"bench {name}: figures without a description: {undocumented}")
  payload = {"bench": name, "setup": setup, "headline": _clean(dict(headline)),
             "figures": _clean(dict(figures)), "about": dict(about)}
  if limits is not None:
    payload["limits"] = _clean(dict(limits))
  if m._end is None:  # not yet closed: stop the clock now, so wall time covers the measurements
    m.__exit__(None, None, None)
  written = stamp_lib.write_results(out, payload, m.stamp(threads=dict(threads)))
  line = {"bench": name, "ratio": written["headline"]["ratio"],
          "fraction_of_limit": written["headline"]["fraction_of_limit"], "out": out}
  print(json.dumps(line), flush=True)
  return written


def _value(v: Any) -> str:
  if isinstance(v, bool) or v is None:
    return str(v).lower() if v is not None else "—"
  if isinstance(v, float):
    if abs(v) >= 1000:
      return f"{v:,.0f}"
    return f"{v:.4g}"
  if isinstance(v, int):
    return f"{v:,}"
  return str(v)


def _stamp_sentence(s: Mapping[str, Any]) -> str:
  cpu = s["device"]["cpu"]
  where = f"{cpu['cpu_model']} ({cpu['logical_cores']} logical cores)"
  acc = s["device"].get("accelerator")
  if acc:
    where = f"{acc['count']} x {acc['device_kind']} ({acc['platform']}), host {where}"
  threads = ", ".join(f"{k} {v}" for k, v in (s.get("threads") or {}).items()) or "not recorded"
  load = s["load_avg_1m"]
  versions = ", ".join(f"{k} {v}" for k, v in s["versions"].items())
  commit = s["commit"][:12] + (" with uncommitted changes" if s["dirty"] else "")
  return (f"Measured by `{s['command']}` at commit `{commit}` ({s['written_utc']}) on {where}; "
          f"threads: {threads}; 1-minute load average {_value(load['before'])} before, "
          f"{_value(load['after'])} after; wall time {s['wall_s']:.0f} s; {versions}.")


def render(results: Mapping[str, Any]) -> str:
  """A bench results file as markdown: headline, figures table, setup and the stamp."""
  missing = stamp_lib.missing_stamp_fields(results)
  if missing:
    raise ValueError(f"bench results lack stamp fields {missing}: re-run the benchmark")
  h = results["headline"]
  fraction = h["fraction_of_limit"]
  lines = [f"Like for like ({h['ratio_is']}): **{_value(h['ratio'])}x**. "
           f"Distance to the physical limit ({h['limit_is']}): "
           f"**{'—' if fraction is None else f'{100 * fraction:.1f}%'}**.",
           "", "| figure | value | what it is |", "|---|---:|---|"]
  if "--tiny" in results["stamp"]["command"].split():
    lines[:0] = ["**These figures come from the seconds-long `--tiny` test configuration and say "
                 f"nothing about speed: run `./run.sh bench {results['bench']}` for the real "
                 "benchmark.**", ""]
  for key, value in results["figures"].items():
    what = results["about"][key].replace("|", "\\|")
    lines.append(f"| {key} | {_value(value)} | {what} |")
  lines += ["", f"Setup: {results['setup']}"]
  limits = results.get("limits")
  if limits:
    device = limits["platform"]
    if limits["device_kind"] != device:
      device += f" ({limits['device_kind']})"
    lines += ["", f"Limits measured in the same run on {device}: {limits['how']}."]
  lines += ["", _stamp_sentence(results["stamp"])]
  return "\n".join(lines)
