"""Regenerates the README's measured tables from the JSON files under results/.

Each table sits between `<!-- table: results/NAME.json -->` and `<!-- /table -->`; the renderer is
chosen by the file's name. The README never holds a figure that no results file backs.

  python -m kard_jax.report.readme          # rewrite README.md in place
  python -m kard_jax.report.readme --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import os
import re
import sys
from typing import Callable, Sequence

from kard_jax.data.jsonl import atomic_open

# file-name pattern under results/ -> "module:function" taking the parsed JSON, returning markdown
RENDERERS: dict[str, str] = {
    "retrieval_recall.json": "kard_jax.report.retrieval_tables:render",
    "reranker_*.json": "kard_jax.report.reranker_tables:render",
    "synthetic.json": "kard_jax.report.tables:markdown",
    "synthetic_*.json": "kard_jax.report.tables:markdown",
    "bench_serve.json": "kard_jax.report.serve_tables:render",
    "bench_retrieval_scale.json": "kard_jax.report.retrieval_scale_tables:render",
    "bench_*.json": "kard_jax.report.bench:render",
    "plan_*.json": "kard_jax.training.plan:render",
}

_BLOCK = re.compile(r"(<!-- table: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def _renderer(name: str) -> Callable[[dict], str]:
  for pattern, target in RENDERERS.items():
    if fnmatch.fnmatch(name, pattern):
      module, func = target.split(":")
      return getattr(importlib.import_module(module), func)
  raise KeyError(f"no renderer for results file {name!r}")


def regenerate(readme_text: str, root: str) -> str:
  def replace(match: re.Match) -> str:
    path = match.group("path")
    with open(os.path.join(root, path), encoding="utf-8") as f:
      table = _renderer(os.path.basename(path))(json.load(f)).rstrip("\n")
    return f"{match.group(1)}{table}\n{match.group(4)}"

  return _BLOCK.sub(replace, readme_text)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true", help="only report whether README.md is current")
  parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), help="repository root")
  args = parser.parse_args(argv)
  readme = os.path.join(args.root, "README.md")
  with open(readme, encoding="utf-8") as f:
    old = f.read()
  new = regenerate(old, args.root)
  if args.check:
    if new != old:
      print("README.md tables are out of date: run python -m kard_jax.report.readme", file=sys.stderr)
      return 1
    return 0
  if new != old:
    with atomic_open(readme) as f:
      f.write(new)
  return 0


if __name__ == "__main__":
  sys.exit(main())
