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
  lines = [f"## {results.get('benchmark', '?')}: accuracy (%) on the {split} split", ""]
  header = ["method", "decoding"] + [f"{g} (n={_count(rows, g)})" for g in groups] + ["parsed %"]
  lines.append("| " + " | ".join(header) + " |")
  lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
  for row in rows:
    acc = row.get("accuracy", {})
    cells = [row.get("name", row.get("method", "?")), row.get("decoding", "")]
    cells += [_fmt(acc.get(g)) for g in groups] + [_fmt(row.get("parse_rate"))]
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
    group = sweep.get("group", "unseen")
    methods = _unique([(r["method"], r.get("name", r["method"])) for r in sweep["rows"]])
    xs = sorted({r[x] for r in sweep["rows"]})
    lines += ["", f"### {group} accuracy (%) against knowledge-base size ({x})", ""]
    lines.append("| method | " + " | ".join(str(v) for v in xs) + " |")
    lines.append("|---|" + "|".join(["---:"] * len(xs)) + "|")
    for key, suffix in (("accuracy", ""), ("reasoning_accuracy", " (answer its rationale reaches)")):
      for method, name in methods:
        match = {r[x]: r for r in sweep["rows"] if r["method"] == method and r.get(key)}
        if not match:
          continue
        cells = [_fmt(match[v][key].get(group)) if v in match else "–" for v in xs]
        lines.append(f"| {name}{suffix} | " + " | ".join(cells) + " |")

  retrieval = results.get("retrieval") or {}
  if retrieval:
    metrics = sorted({m for v in retrieval.values() for m in v}, key=_metric_order)
    lines += ["", f"### retrieval on the {split} split (gold passages recalled, %)", ""]
    lines.append("| passages | " + " | ".join(metrics) + " |")
    lines.append("|---|" + "|".join(["---:"] * len(metrics)) + "|")
    for name, values in retrieval.items():
      lines.append(f"| {name} | " + " | ".join(_fmt(values.get(m)) for m in metrics) + " |")

  timing = results.get("timing") or {}
  if timing.get("total_seconds") is not None:
    lines += ["", f"Wall time: {timing['total_seconds']:.0f} s"
              + (f" ({timing['note']})" if timing.get("note") else "") + "."]
  if results.get("command"):
    lines += ["", f"Produced by `{results['command']}`."]
  return "\n".join(lines) + "\n"


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


def plot(results: dict[str, Any], path: str) -> str:
  """Accuracy per method (bars per group) and, with a sweep, accuracy against KB size."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  rows = results.get("rows", [])
  sweep = results.get("sweep") or {}
  panels = 2 if sweep.get("rows") else 1
  fig, axes = plt.subplots(1, panels, figsize=(7 + 4.5 * (panels - 1), 4.2), squeeze=False)
  ax = axes[0][0]
  groups = _groups(rows)
  width = 0.8 / max(len(groups), 1)
  for j, group in enumerate(groups):
    xs = [i + (j - (len(groups) - 1) / 2) * width for i in range(len(rows))]
    ys = [r.get("accuracy", {}).get(group) or 0.0 for r in rows]
    ax.bar(xs, ys, width, label=group)
  ax.set_xticks(range(len(rows)))
  ax.set_xticklabels([_short(r) for r in rows], rotation=35, ha="right", fontsize=8)
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(0, 100)
  ax.set_title(f"{results.get('benchmark', '')}: accuracy per method")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)

  if panels == 2:
    ax = axes[0][1]
    x = sweep.get("x", "num_entities")
    group = sweep.get("group", "unseen")
    for i, (method, name) in enumerate(_unique([(r["method"], r.get("name", r["method"]))
                                                for r in sweep["rows"]])):
      color = f"C{i}"
      for key, style, suffix in (("accuracy", "-", ""),
                                 ("reasoning_accuracy", "--", " (rationale's answer)")):
        pts = sorted((r[x], r[key][group]) for r in sweep["rows"]
                     if r["method"] == method and (r.get(key) or {}).get(group) is not None)
        if pts:
          ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", color=color,
                  label=name + suffix)
    ax.set_xscale("log")
    ax.set_xlabel(x.replace("_", " ") + " (knowledge-base size)")
    ax.set_ylabel(f"{group} accuracy (%)")
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


def _short(row: dict[str, Any]) -> str:
  name = row.get("name", row.get("method", "?"))
  decoding = row.get("decoding", "")
  return f"{name}\n{decoding}" if decoding and decoding != "greedy" else name


def write_report(results: dict[str, Any], out_dir: str, name: str,
                 with_plot: bool = True) -> dict[str, str]:
  """Writes name.json, name.md and (optionally) name.png into out_dir; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {"json": os.path.join(out_dir, f"{name}.json"), "md": os.path.join(out_dir, f"{name}.md")}
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
