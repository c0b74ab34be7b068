"""Renders results/bench_retrieval_scale.json (bench/retrieval_scale.py) as the README's table.

One row per measured index size and one for the projection (labelled as such), the targets and
whether the larger measured size met them, and the stamp sentence every benchmark table ends with.
"""

from __future__ import annotations

from typing import Any, Mapping

from kard_jax.report import bench as bench_lib
from kard_jax.report import stamp as stamp_lib


def _num(v: Any, digits: int = 0) -> str:
  if v is None:
    return "—"
  return f"{v:,.{digits}f}"


def render(results: Mapping[str, Any]) -> str:
  missing = stamp_lib.missing_stamp_fields(results)
  if missing:
    raise ValueError(f"bench results lack stamp fields {missing}: re-run the benchmark")
  runs, projection = results["measured"], results["projection"]
  large = runs[-1]
  threads = large["threads"]
  lines = []
  if results.get("tiny"):
    lines += ["**These figures come from the seconds-long `--tiny` test configuration and say "
              "nothing about scale: run `python bench/retrieval_scale.py` for the real "
              "benchmark.**", ""]
  met = results["targets_met"]
  verdict = ", ".join(f"{name} {'met' if ok else '**not met**'}" for name, ok in met.items())
  lines += [f"Targets ({results['targets']}): {verdict}.", "",
            f"| passages | shards | build s (CPU s) | peak RSS GB (tokenising worker) | index GB "
            f"(score matrices) | top-{large['k']} q/s, {threads} threads | q/s, 1 thread | "
            "latency p50 / p95 ms |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in runs:
    lines.append(
        f"| {r['passages']:,} | {r['shards']} | {_num(r['build_s'])} ({_num(r['build_cpu_s'])}) | "
        f"{_num(r['peak_rss_gb'], 2)} ({_num(r['peak_rss_tokenising_worker_gb'], 2)}) | "
        f"{_num(r['index_gb_total'], 2)} ({_num(r['index_gb_matrices'], 2)}) | {_num(r['qps'])} | "
        f"{_num(r['qps_1_thread'])} | {_num(r['latency_ms_p50'], 1)} / "
        f"{_num(r['latency_ms_p95'], 1)} |")
  p = projection
  lines.append(
      f"| {p['passages']:,} (projection) | — | {_num(p['build_s'])} | "
      f"{_num(p['peak_rss_gb'], 2)} | "
      f"{_num(p['index_gb_total'], 2)} ({_num(p['index_gb_matrices'], 2)}) | {_num(p['qps'])} | "
      f"{_num(p['qps_1_thread'])} | — |")
  corpus = results["corpus"]
  lines += ["", f"Corpus: {corpus['kind']}, {corpus['words_per_passage']} words per passage, "
            f"{corpus['vocab']}; queries of {corpus['query_words']} words drawn from random "
            f"passages. Projection: {p['method']} (— where timing noise made the larger index "
            "look faster).", "",
            bench_lib._stamp_sentence(results["stamp"])]  # pylint: disable=protected-access
  return "\n".join(lines)
