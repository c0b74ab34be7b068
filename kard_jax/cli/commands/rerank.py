"""`kard rerank`: train, evaluate and apply the KARD passage reranker.

  kard rerank train    --data DATA/strategyqa --index INDEX --model_dir RUN \
                       --gin_file gin_configs/reranker/strategyqa.gin
  kard rerank evaluate --data DATA/strategyqa --index INDEX --model_dir RUN \
                       --golden G1.json G2.json --out R.json
  kard rerank apply    --data DATA/strategyqa --index INDEX --model_dir RUN --split validation

`train` learns from (question, rationale) pairs of DATA/examples/train.jsonl and
DATA/rationales/train.jsonl: candidates from BM25 under both, targets BM25(rationale, passage).
It runs the shared trainer (`kard_jax.training.train.train`: mesh, Orbax checkpoints, TensorBoard
summaries, resumption), so the trainer's gin settings (`train.total_steps`, optimizer, periods)
apply. The BM25 index comes from `kard retrieval build`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

HELP = ("train, evaluate and apply the KARD passage reranker (question -> BM25 top-N -> reranked "
        "top-k); `kard rerank SUBCOMMAND --help` for each")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  from kard_jax.cli import flags

  sub = parser.add_subparsers(dest="rerank_command", metavar="SUBCOMMAND", required=True)

  def common(p, needs_model=True):
    p.add_argument("--data", required=True,
                   help="a prepared benchmark directory (examples/, kb/, rationales/)")
    p.add_argument("--index", required=True,
                   help="BM25 index directory (`kard retrieval build --kb ... --out INDEX`)")
    p.add_argument("--model_dir", required=needs_model, help="the reranker's run directory")
    p.add_argument("--cache_dir", default=None, help="where passage token states/vectors are "
                   "cached (default DATA/cache/reranker)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

  p = sub.add_parser("train", help="train a reranker from gin files (resumes --model_dir)",
                     description="Train the reranker with the shared trainer. Gin binds "
                     "`stage.RerankerConfig` (scorer, candidates, temperatures, lengths) and the "
                     "trainer's `train.*` (steps, optimizer); both are read once into a "
                     "`stage.TrainConfig` before training starts.")
  common(p)
  flags.add_gin_flags(p)
  p.epilog = ("Example: kard rerank train --data data/strategyqa --index indexes/strategyqa "
              "--model_dir runs/rr --gin_file gin_configs/reranker/strategyqa.gin "
              "--gin.TRAIN_STEPS=200. " + p.epilog)

  p = sub.add_parser("evaluate", help="KARD's top-1/3/5 on held-out pairs and recall@k of gold "
                     "evidence: question-BM25, reranker, rationale-BM25 (ceiling)")
  common(p)
  p.add_argument("--split", default="validation", help="held-out questions (default validation)")
  p.add_argument("--golden", nargs="*", default=None, metavar="FILE",
                 help="StrategyQA golden_sentences_*.json files (gold evidence matched by text); "
                 "default: each example's extra['gold_passages']")
  p.add_argument("--ceiling_rationales", default=None, metavar="FILE",
                 help="teacher rationales for the held-out questions (our rationale jsonl or the "
                 "import format qid/question/rationale) for the rationale-BM25 ceiling")
  p.add_argument("--top_n", type=flags.positive_int, default=100,
                 help="question-BM25 candidates to rerank")
  p.add_argument("--ks", default="1,5,10,20", help="recall cut-offs (comma-separated)")
  p.add_argument("--fusion_weight", type=flags.non_negative_float, default=0.5,
                 help="also report reranker + question BM25 fused with this BM25 weight "
                 "(z-scores over each candidate list; 0: no fusion row)")
  p.add_argument("--out", default=None, help="write the result JSON here (also printed)")

  p = sub.add_parser("apply", help="write DATA/retrieval/reranked_{split}.jsonl")
  common(p)
  p.add_argument("--split", action="append", default=None,
                 help="split(s) to rerank (repeatable; default validation and test)")
  p.add_argument("--top_n", type=flags.positive_int, default=100,
                 help="question-BM25 candidates to rerank")
  p.add_argument("--top_k", type=flags.positive_int, default=10, help="passages kept per question")
  p.add_argument("--bm25_weight", type=flags.non_negative_float, default=0.0,
                 help="rank by reranker + this weight x question BM25 (z-scores); 0: KARD's "
                 "reranker alone")


def run(args: argparse.Namespace) -> int:
  from kard_jax.reranker import stage

  t0 = time.time()
  paths = stage.RunPaths(data_dir=args.data, index_dir=args.index, model_dir=args.model_dir,
                         cache_dir=args.cache_dir)
  if args.rerank_command == "train":
    from kard_jax.cli import flags
    from kard_jax.training import trainer as trainer_lib

    if not args.gin_file:
      print("kard rerank train: at least one --gin_file is required (e.g. "
            "gin_configs/reranker/strategyqa.gin)", file=sys.stderr)
      return 2
    flags.parse_gin(args)
    config = stage.TrainConfig.from_gin()
    try:
      result = stage.train(config, paths, show_progress=not args.quiet)
    except trainer_lib.NonFiniteLossError as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
    summary = {"step": result.step, "train": result.train_metrics, "dev": result.eval_metrics}
  elif args.rerank_command == "evaluate":
    ks = tuple(int(k) for k in args.ks.split(",") if k.strip())
    summary = stage.evaluate(
        paths, stage.EvalConfig(split=args.split, golden=tuple(args.golden) if args.golden
                                else None, ceiling_rationales=args.ceiling_rationales,
                                top_n=args.top_n, ks=ks, fusion_weight=args.fusion_weight),
        show_progress=not args.quiet)
  else:
    summary = stage.apply(
        paths, stage.ApplyConfig(splits=tuple(args.split or ("validation", "test")),
                                 top_n=args.top_n, top_k=args.top_k,
                                 bm25_weight=args.bm25_weight),
        show_progress=not args.quiet)
  summary["wall_s"] = round(time.time() - t0, 1)
  if getattr(args, "out", None):
    from kard_jax.data.jsonl import atomic_open
    with atomic_open(args.out, "w") as f:
      f.write(json.dumps(summary, indent=1, sort_keys=True) + "\n")
  print(json.dumps(summary, sort_keys=True))
  return 0
