"""Renders a retrieval-evaluation JSON (`kard retrieval evaluate --out`) as a markdown table.

  python -m kard_jax.report.retrieval_tables results/retrieval_recall.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence


def _ks(rows: Sequence[dict[str, Any]], metric: str) -> list[int]:
  ks = {int(key.split("@")[1]) for row in rows for key in row if key.startswith(f"{metric}@")}
  return sorted(ks)


def markdown_table(results: dict[str, Any], metrics: Sequence[str] = ("recall", "hit")) -> str:
  rows = results["rows"]
  header = ["benchmark", "questions", "query", "queries"]
  cols = [(m, k) for m in metrics for k in _ks(rows, m)]
  header += [f"{m}@{k}" for m, k in cols]
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] * 4 + ["---:"] * len(cols)) + "|"]
  for row in rows:
    cells = [row.get("benchmark", ""), row.get("split", ""), row["query"], str(row["n"])]
    cells += [f"{row[f'{m}@{k}']:.3f}" if f"{m}@{k}" in row else "" for m, k in cols]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
  """The table plus a line saying how it was produced."""
  out = [markdown_table(results)]
  if results.get("command"):
    out.append(f"\nProduced by: `{results['command']}`")
  return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("results", help="JSON written by `kard retrieval evaluate --out`")
  args = parser.parse_args(argv)
  with open(args.results, encoding="utf-8") as f:
    print(render(json.load(f)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
