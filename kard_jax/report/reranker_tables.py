"""Markdown tables from the reranker's result files (results/reranker_*.json), for the README.

    python -m kard_jax.report.reranker_tables results/reranker_strategyqa.json \
        results/reranker_synthetic.json

A result file is `kard rerank evaluate`'s JSON plus "benchmark", "title", "commands" (the exact
command lines, in order, each with its wall time) and "machine".
"""

from __future__ import annotations

import json
import sys
from typing import Any, Mapping, Sequence

ROWS = (("question_bm25", "question BM25"),
        ("reranker", "reranker (question BM25 top-{top_n}, reranked)"),
        ("reranker_bm25", "reranker + question BM25 (z-score fusion, weight {fusion})"),
        ("rationale_bm25", "rationale BM25 (ceiling: needs the teacher's rationale)"))


def _fmt(x: Any) -> str:
  return f"{x:.3f}" if isinstance(x, float) else str(x)


def _recall_rows(rows: Mapping[str, Mapping[str, float]], ks: Sequence[str], top_n: int,
                 fusion: float) -> list:
  out = []
  for key, label in ROWS:
    if key in rows:
      r = rows[key]
      out.append("| " + " | ".join([label.format(top_n=top_n, fusion=fusion),
                                    _fmt(r.get("n", ""))]
                                   + [_fmt(r[k]) for k in ks]) + " |")
  return out


def recall_table(recall: Mapping[str, Any], subset: str, top_n: int = 100,
                 fusion: float = 0.0) -> str:
  rows = recall[subset]
  ks = sorted((k for k in next(iter(rows.values())) if k.startswith("recall@")),
              key=lambda k: int(k.split("@")[1]))
  head = ["| retrieval | n | " + " | ".join(ks) + " |", "|---|---:|" + "---:|" * len(ks)]
  return "\n".join(head + _recall_rows(rows, ks, top_n, fusion))


def kard_table(acc: Mapping[str, Any]) -> str:
  lines = ["| scorer of the 8 candidates | pairs | top-1 | top-3 | top-5 |",
           "|---|---:|---:|---:|---:|"]
  for key, label in (("question_bm25", "question BM25"), ("reranker", "reranker")):
    a = acc[key]
    lines.append(f"| {label} | {acc['n']} | {a['top1']:.3f} | {a['top3']:.3f} | {a['top5']:.3f} |")
  return "\n".join(lines)


def render(result: Mapping[str, Any]) -> str:
  """One benchmark's section: recall tables, KARD's accuracy and how the numbers were made."""
  title = result.get("title") or result.get("benchmark", "reranker")
  top_n, fusion = result.get("top_n", 100), result.get("fusion_weight", 0.0)
  parts = [f"### {title}", ""]
  recall = result["recall"]
  n_gold = next(iter(recall["all"].values())).get("n", "")
  parts += [f"Recall of gold evidence on the {result.get('questions', '')} held-out "
            f"`{result.get('split', '')}` questions ({n_gold} with gold evidence):", "",
            recall_table(recall, "all", top_n, fusion), ""]
  if "with_rationale" in recall:
    parts += ["The same on those that have a teacher rationale, with rationale BM25 as the "
              "ceiling (its n counts rationales):", "",
              recall_table(recall, "with_rationale", top_n, fusion), ""]
  dev = result.get("dev")
  if dev:
    parts += [f"On the {dev['questions']} training questions held out from the reranker's "
              "training (their teacher rationales give the ceiling; n of that row counts "
              "rationales):", "", recall_table(dev["recall"], "with_rationale", top_n, fusion), "",
              "KARD's accuracy on their (question, rationale) pairs: is the rationale's top BM25 "
              "passage ranked 1st / in the top 3 / top 5 of 8 candidates?", "",
              kard_table(dev["kard_accuracy"]), ""]
  commands = result.get("commands") or []
  if commands:
    parts += ["Produced by (wall time on " + result.get("machine", "this machine") + "):", "",
              "```"]
    parts += [f"{c['command']}    # {c['wall_s']:.0f} s" for c in commands]
    parts += ["```", ""]
    total = result.get("total_wall_s", sum(c["wall_s"] for c in commands))
    parts += [f"Total wall time: {total / 60:.1f} min."
              + (f" {result['note']}" if result.get("note") else ""), ""]
  return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
  paths = list(sys.argv[1:] if argv is None else argv)
  if not paths:
    print("usage: python -m kard_jax.report.reranker_tables RESULT.json [RESULT.json ...]",
          file=sys.stderr)
    return 2
  sections = []
  for path in paths:
    with open(path, encoding="utf-8") as f:
      sections.append(render(json.load(f)))
  print("\n".join(sections).rstrip())
  return 0


if __name__ == "__main__":
  sys.exit(main())
