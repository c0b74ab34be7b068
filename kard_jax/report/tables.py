"""The results table and plot: markdown for the console and a file, JSON it is made from, a PNG.

`write_report(results, out_dir, name)` writes `name.json` (the input, verbatim, including the
command that produced it), `name.md` (rendered from that JSON alone, so anyone can re-render it)
and `name.png`. The results dict:

  {"command": "./run.sh", "benchmark": "synthetic", "split": "test", "config": {...},
   "rows": [{"method": "kard_bm25", "name": "KARD (BM25)", "decoding": "greedy",
             "accuracy": {"all": 61.0, "seen": 70.0, "unseen": 58.0},
             "counts": {"all": 200, "seen": 50, "unseen": 150}, "parse_rate": 100.0}, ...],
   "sweep": {"x": "num_entities", "rows": [{"num_entities": 100, "method": "answer_only",
             "name": "...", "accuracy": {...}}, ...]},
   "retrieval": {"question_bm25": {"recall@1": ...}, "reranked": {...}},
   "timing": {"total_seconds": 512.3, "stages": {"train/kard_bm25": 80.1, ...}}}

Accuracies are percentages. Groups (e.g. "seen"/"unseen" entities for the synthetic benchmark)
are whatever keys the rows carry besides "all".
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from kard_jax.data.jsonl import atomic_open


def _fmt(value: Any) -> str:
  if value is None:
    return "–"
  if isinstance(value, float):
    return f"{value:.1f}"
  return str(value)


def _cell(row: dict[str, Any], group: str, key: str = "accuracy") -> str:
  """"mean [lo, hi]": the accuracy with its 95% interval (when the row has one)."""
  value = (row.get(key) or {}).get(group)
  interval = (row.get("interval") or {}).get(group) if key == "accuracy" else None
  if value is None:
    return "–"
  if interval:
    return f"{value:.1f} [{interval[0]:.1f}, {interval[1]:.1f}]"
  return _fmt(value)


def _seeds(row: dict[str, Any]) -> str:
  return str(len(row["seeds"])) if row.get("seeds") else "1"


def _groups(rows: Sequence[dict[str, Any]]) -> list[str]:
  seen: list[str] = []
  for row in rows:
    for key in row.get("accuracy", {}):
      if key != "all" and key not in seen:
        seen.append(key)
  return ["all"] + sorted(seen, key=lambda g: (g != "unseen", g))


def markdown(results: dict[str, Any]) -> str:
  """The table(s) as GitHub markdown, from the results dict alone."""
  rows = results.get("rows", [])
  groups = _groups(rows)
  split = results.get("split", "test")
  config = results.get("config") or {}
  title = config.get("results_name") or results.get("benchmark", "?")
  world = (config.get("synthetic") or {}).get("num_entities")
  lines = [f"## {title}: accuracy (%) on the {split} split"
           + (f" ({world} entities)" if world else ""), ""]
  if any(r.get("interval") for r in rows):
    lines += [_INTERVAL_NOTE, ""]
  header = (["method", "decoding", "seeds"] + [f"{g} (n={_count(rows, g)})" for g in groups]
            + ["parsed %"])
  lines.append("| " + " | ".join(header) + " |")
  lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
  for row in rows:
    cells = [row.get("name", row.get("method", "?")), row.get("decoding", ""), _seeds(row)]
    cells += [_cell(row, g) for g in groups] + [_fmt(row.get("parse_rate"))]
    lines.append("| " + " | ".join(cells) + " |")

  reasoned = [r for r in rows if r.get("reasoning_accuracy")]
  if reasoned:
    lines += ["", "### the answer the rationale reaches (%), whatever letter it then states", "",
              "| method | " + " | ".join(groups) + " |",
              "|---|" + "|".join(["---:"] * len(groups)) + "|"]
    for row in reasoned:
      acc = row["reasoning_accuracy"]
      lines.append(f"| {row.get('name', row['method'])} | "
                   + " | ".join(_fmt(acc.get(g)) for g in groups) + " |")

  sweep = results.get("sweep") or {}
  if sweep.get("rows"):
    x = sweep.get("x", "num_entities")
    methods = _unique([(r["method"], r.get("name", r["method"])) for r in sweep["rows"]])
    xs = sorted({r[x] for r in sweep["rows"]})
    for group in sweep_groups(sweep):
      lines += ["", f"### {group} accuracy (%) against knowledge-base size ({x})", ""]
      lines.append("| method | seeds | " + " | ".join(str(v) for v in xs) + " |")
      lines.append("|---|---:|" + "|".join(["---:"] * len(xs)) + "|")
      for key, suffix in (("accuracy", ""),
                          ("reasoning_accuracy", " (answer its rationale reaches)")):
        for method, name in methods:
          match = {r[x]: r for r in sweep["rows"] if r["method"] == method and r.get(key)}
          if not match:
            continue
          seeds = "/".join(sorted({_seeds(r) for r in match.values()}))
          cells = [_cell(match[v], group, key) if v in match else "–" for v in xs]
          lines.append(f"| {name}{suffix} | {seeds} | " + " | ".join(cells) + " |")
    by_size = sweep.get("retrieval") or {}
    if by_size:
      sizes = sorted(by_size, key=int)
      names = _unique([name for v in by_size.values() for name in v])
      lines += ["", f"### recall@1 of the subject's passage (%) against knowledge-base size "
                f"({x}), same {results.get('split', 'test')} questions", ""]
      lines.append("| passages | " + " | ".join(sizes) + " |")
      lines.append("|---|" + "|".join(["---:"] * len(sizes)) + "|")
      for name in names:
        cells = [_fmt((by_size[n].get(name) or {}).get("recall@1")) for n in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

  retrieval = results.get("retrieval") or {}
  if retrieval:
    metrics = sorted({m for v in retrieval.values() for m in v}, key=_metric_order)
    lines += ["", f"### retrieval on the {split} split (gold passages recalled, %)", ""]
    lines.append("| passages | " + " | ".join(metrics) + " |")
    lines.append("|---|" + "|".join(["---:"] * len(metrics)) + "|")
    for name, values in retrieval.items():
      lines.append(f"| {name} | " + " | ".join(_fmt(values.get(m)) for m in metrics) + " |")

  from kard_jax.report import claims  # pylint: disable=import-outside-toplevel

  sentences = claims.sentences(results)
  if sentences:
    lines += ["", "### what these numbers support (generated from them)", ""]
    lines += [f"- {s}" for s in sentences]

  timing = results.get("timing") or {}
  stamp = results.get("stamp") or {}
  if timing.get("total_seconds") is not None:
    load = stamp.get("load_avg_1m_during") or {}
    lines += ["", f"Wall time: {timing['total_seconds']:.0f} s"
              + (f" ({timing['note']}"
                 + (f", which took {timing['reused_stage_seconds']:.0f} s when they ran"
                    if timing.get("reused_stage_seconds") is not None else "") + ")"
                 if timing.get("note") else "")
              + (f"; 1-minute load average during the run: mean {load['mean']:.1f}, max "
                 f"{load['max']:.1f}, on {stamp.get('device', {}).get('cpu', {}).get('logical_cores')}"
                 " logical cores" if load else "") + "."]
  if results.get("command"):
    lines += ["", f"Produced by `{results['command']}`"
              + (f" at commit {stamp['commit'][:10]}{' (dirty tree)' if stamp.get('dirty') else ''}"
                 if stamp.get("commit") else "") + "."]
  return "\n".join(lines) + "\n"


_INTERVAL_NOTE = ("Accuracy (%): mean over training seeds [95% interval: Student-t over seeds; "
                  "with one seed, the Wilson binomial interval]. Per-seed numbers are in the JSON.")


def sweep_groups(sweep: dict[str, Any]) -> list[str]:
  groups = sweep.get("groups") or [sweep.get("group", "unseen")]
  present = {g for r in sweep.get("rows", []) for g in (r.get("accuracy") or {})}
  return [g for g in groups if g in present]


def _metric_order(name: str) -> tuple:
  head, _, k = name.partition("@")
  return (head, int(k) if k.isdigit() else 0)


def _count(rows: Sequence[dict[str, Any]], group: str) -> str:
  counts = {r.get("counts", {}).get(group) for r in rows} - {None}
  return "/".join(str(c) for c in sorted(counts)) if counts else "?"


def _unique(items):
  out = []
  for item in items:
    if item not in out:
      out.append(item)
  return out


def _yerr(rows: Sequence[dict[str, Any]], group: str, values: Sequence[float]):
  """Error-bar lengths [[below...], [above...]] from each row's interval (0 where none)."""
  low, high = [], []
  for row, v in zip(rows, values):
    interval = (row.get("interval") or {}).get(group)
    low.append(max(v - interval[0], 0.0) if interval else 0.0)
    high.append(max(interval[1] - v, 0.0) if interval else 0.0)
  return [low, high]


def plot(results: dict[str, Any], path: str) -> str:
  """Accuracy per method (bars per group, 95% intervals) and, with a sweep, accuracy against
  knowledge-base size, one panel per group (seen, unseen), one line per method, with intervals."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  rows = results.get("rows", [])
  sweep = results.get("sweep") or {}
  sweep_panels = sweep_groups(sweep) if sweep.get("rows") else []
  panels = 1 + len(sweep_panels)
  fig, axes = plt.subplots(1, panels, figsize=(7 + 4.5 * (panels - 1), 4.2), squeeze=False)
  ax = axes[0][0]
  groups = _groups(rows)
  width = 0.8 / max(len(groups), 1)
  for j, group in enumerate(groups):
    xs = [i + (j - (len(groups) - 1) / 2) * width for i in range(len(rows))]
    ys = [r.get("accuracy", {}).get(group) or 0.0 for r in rows]
    ax.bar(xs, ys, width, label=group, yerr=_yerr(rows, group, ys), capsize=2,
           error_kw={"elinewidth": 0.8})
  chance = chance_level(results)
  if chance is not None:
    ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
  ax.set_xticks(range(len(rows)))
  ax.set_xticklabels([_short(r) for r in rows], rotation=35, ha="right", fontsize=8)
  ax.set_ylabel("accuracy (%), 95% interval")
  ax.set_ylim(0, 100)
  ax.set_title(f"{results.get('benchmark', '')}: accuracy per method")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)

  x = sweep.get("x", "num_entities")
  for k, group in enumerate(sweep_panels):
    ax = axes[0][1 + k]
    for i, (method, name) in enumerate(_unique([(r["method"], r.get("name", r["method"]))
                                                for r in sweep["rows"]])):
      pts = sorted(((r[x], r) for r in sweep["rows"] if r["method"] == method
                    and (r.get("accuracy") or {}).get(group) is not None), key=lambda p: p[0])
      if not pts:
        continue
      ys = [p[1]["accuracy"][group] for p in pts]
      ax.errorbar([p[0] for p in pts], ys, yerr=_yerr([p[1] for p in pts], group, ys),
                  marker="o", color=f"C{i}", capsize=3, label=name)
    if chance is not None:
      ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel(x.replace("_", " ") + " (knowledge-base size)")
    ax.set_ylabel(f"{group} accuracy (%), 95% interval")
    ax.set_ylim(0, 100)
    ax.set_title(f"{group}-entity questions vs knowledge-base size")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}.png"
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)
  return path


def chance_level(results: dict[str, Any]) -> float | None:
  """100 / choices for the synthetic benchmark (fixed choice count), else None."""
  if results.get("benchmark") != "synthetic":
    return None
  synthetic = (results.get("config") or {}).get("synthetic") or {}
  return 100.0 / int(synthetic.get("num_choices", 4))


def _short(row: dict[str, Any]) -> str:
  name = row.get("name", row.get("method", "?"))
  decoding = row.get("decoding", "")
  return f"{name}\n{decoding}" if decoding and decoding != "greedy" else name


def write_report(results: dict[str, Any], out_dir: str, name: str,
                 with_plot: bool = True, stamp: dict[str, Any] | None = None) -> dict[str, str]:
  """Writes name.json (with its provenance `stamp`, see kard_jax.report.stamp), name.md and
  (optionally) name.png into out_dir; returns their paths."""
  from kard_jax.report import stamp as stamp_lib  # pylint: disable=import-outside-toplevel

  os.makedirs(out_dir, exist_ok=True)
  paths = {"json": os.path.join(out_dir, f"{name}.json"), "md": os.path.join(out_dir, f"{name}.md")}
  if stamp is not None:
    results = stamp_lib.write_results(paths["json"], results, stamp)
  else:
    with atomic_open(paths["json"]) as f:
      f.write(json.dumps(results, indent=2, sort_keys=False) + "\n")
  with atomic_open(paths["md"]) as f:
    f.write(markdown(results))
  if with_plot:
    paths["png"] = plot(results, os.path.join(out_dir, f"{name}.png"))
  return paths


def render_file(json_path: str) -> str:
  """Markdown from a results JSON written by `write_report` (to re-render a committed table)."""
  with open(json_path, encoding="utf-8") as f:
    return markdown(json.load(f))
