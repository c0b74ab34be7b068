"""`kard data`: summarise a benchmark file, prepare a benchmark directory, make synthetic data.

  kard data summary --benchmark arc --path ../shared/data/arc/ARC-Easy-Dev.jsonl
  kard data prepare --benchmark strategyqa --source ../shared/data/strategyqa --out data
      --rationales ../shared/data/rationales/strategyqa_mentorkd_..._train.normalized.jsonl

`prepare` writes DATA/<benchmark>/examples/{train,validation,test}.jsonl (and, with --rationales,
rationales/train.jsonl: the KARD-filtered rationales of the train split only). StrategyQA's
test and validation are two disjoint seeded 10% slices of its labelled file (see
kard_jax.data.splits).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import sys
from typing import Sequence

from kard_jax.data import benchmarks, splits
from kard_jax.data.example import Example, write_examples
from kard_jax.cli import flags

HELP = ("Load, convert and summarise benchmarks: `summary` prints counts for one official file, "
        "`prepare` writes a benchmark directory, `synthetic` generates the synthetic benchmark.")


_SYNTHETIC = "kard_jax.cli.commands.data_synthetic"


def _synthetic_module():
  """The `synthetic` subcommand's module, or None in a build without the synthetic benchmark."""
  try:
    return importlib.import_module(_SYNTHETIC)
  except ModuleNotFoundError as e:
    if e.name == _SYNTHETIC:
      return None
    raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
  sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

  p = sub.add_parser("summary", help="load one official benchmark file and print a JSON summary "
                     "(last line): examples, answer and choice-count distributions")
  p.add_argument("--benchmark", required=True, choices=sorted(benchmarks.LOADERS))
  p.add_argument("--path", required=True, help="one file in the benchmark's official format")

  p = sub.add_parser("prepare", help="write DATA/<benchmark>/examples/{train,validation,test}"
                     ".jsonl from the official files (and rationales/train.jsonl)")
  p.add_argument("--benchmark", required=True, choices=sorted(splits.SOURCE_FILES))
  p.add_argument("--source", required=True, nargs="+", metavar="DIR_OR_SPLIT=FILE",
                 help="the directory of official files, or SPLIT=FILE items "
                 "(train=..., validation=..., test=...)")
  p.add_argument("--out", required=True, help="data directory; writes OUT/<benchmark>/")
  p.add_argument("--rationales", default=None,
                 help="a teacher-rationale jsonl (qid, question, rationale, teacher_answer, ...) "
                 "to import for the train split")
  p.add_argument("--max_rationales", type=flags.positive_int, default=None,
                 help="keep at most this many gold-matching rationales per question (default all)")
  p.add_argument("--holdout_fraction", type=flags.fraction, default=splits.HOLDOUT_FRACTION,
                 help="share of the train file held out for each split without a file "
                 "(StrategyQA: test and validation)")
  p.add_argument("--seed", type=int, default=splits.HOLDOUT_SEED, help="hold-out split seed")

  synthetic = _synthetic_module()
  if synthetic is not None:
    p = sub.add_parser("synthetic", help=synthetic.HELP, description=synthetic.HELP)
    synthetic.add_arguments(p)


def summarize(examples: Sequence[Example]) -> dict:
  """{"examples": N, "answers": {label: n}, "choices": {"4": n}} with sorted keys."""
  answers = collections.Counter(ex.answer for ex in examples)
  sizes = collections.Counter(len(ex.choices) for ex in examples)
  return {"examples": len(examples),
          "answers": {k: answers[k] for k in sorted(answers)},
          "choices": {str(k): sizes[k] for k in sorted(sizes)}}


def _summary(args: argparse.Namespace) -> int:
  summary = summarize(benchmarks.load_benchmark(args.benchmark, args.path))
  answers = ", ".join(f"{k} {v}" for k, v in summary["answers"].items())
  print(f"{args.path}: {summary['examples']} {args.benchmark} examples; answers: {answers}")
  print(json.dumps(summary))
  return 0


def _source(items: Sequence[str]):
  if len(items) == 1 and "=" not in items[0]:
    return items[0]
  source = {}
  for item in items:
    split, sep, path = item.partition("=")
    if not sep or split not in splits.SPLITS or split in source:
      raise SystemExit(f"kard data prepare: --source takes one directory or distinct SPLIT=FILE "
                       f"items with SPLIT in {splits.SPLITS}; got {item!r}")
    source[split] = path
  if "train" not in source:
    raise SystemExit("kard data prepare: --source needs a train=FILE item")
  return source


def _prepare(args: argparse.Namespace) -> int:
  # Imported here: the answer parser and importer are only needed when preparing.
  from kard_jax.data import answers, rationale, rationale_import

  loaded = splits.load_splits(args.benchmark, _source(args.source),
                              fraction=args.holdout_fraction, seed=args.seed)
  root = os.path.join(args.out, args.benchmark)
  for split, examples in loaded.items():
    path = os.path.join(root, "examples", f"{split}.jsonl")
    write_examples(path, examples)
    print(f"wrote {len(examples)} {split} examples to {path}", file=sys.stderr)
  result = {"out": root, **{s: len(e) for s, e in loaded.items()}}
  if args.rationales:
    every = {ex.id: ex for exs in loaded.values() for ex in exs}
    imported = rationale_import.import_rationales(args.rationales, every)
    train = {ex.id: ex for ex in loaded["train"]}
    kept = answers.filter_rationales(imported, train, args.max_rationales)
    path = os.path.join(root, "rationales", "train.jsonl")
    rationale.write_rationales(path, kept)
    print(f"wrote {len(kept)} rationales for {len({r.id for r in kept})} train questions to "
          f"{path} ({len(imported)} imported)", file=sys.stderr)
    result["rationales"] = len(kept)
  print(json.dumps(result))
  return 0


def run(args: argparse.Namespace) -> int:
  if args.data_command == "summary":
    return _summary(args)
  if args.data_command == "prepare":
    return _prepare(args)
  synthetic = _synthetic_module()
  return int(synthetic.run(args) or 0)
