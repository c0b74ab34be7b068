"""results/bench_serve.json (written by bench/serve.py) as the README's table."""

from __future__ import annotations

from typing import Any, Mapping


def render(results: Mapping[str, Any]) -> str:
  lines = ["| model | server | requests/s | p50 latency (ms) | p95 latency (ms) | mean batch | "
           "recompilations |", "|---|---|---:|---:|---:|---:|---:|"]
  for name, row in results["models"].items():
    for setting in ("batched", "unbatched"):
      r = row[setting]
      lines.append(f"| {name} ({row['parameters'] / 1e6:.2f}M) | {setting} | "
                   f"{r['requests_per_s']:.2f} | {r['latency_p50_ms']:.0f} | "
                   f"{r['latency_p95_ms']:.0f} | {r['mean_batch']:.1f} | {r['recompilations']} |")
  ratios = ", ".join(f"{name} {row['requests_per_s_ratio']:.1f}x"
                     for name, row in results["models"].items())
  stamp = results.get("stamp", {})
  load = stamp.get("load_avg_1m", {})
  cpu = stamp.get("device", {}).get("cpu", {})
  lines += ["", f"Batched over unbatched requests/s: {ratios} (target {results['target_ratio']}x). "
            f"{results['clients']} clients x {results['requests_per_client']} requests, "
            f"{results['new_tokens']} new tokens each; {cpu.get('cpu_model', 'CPU')} "
            f"({cpu.get('logical_cores', '?')} cores), load average {load.get('before')} before, "
            f"{load.get('after')} after, by: `{stamp.get('command', 'bench/serve.py')}`"]
  return "\n".join(lines)
