"""`kard train`: run `kard_jax.training.train.train` from gin files (T5X's train.py flags)."""

from __future__ import annotations

import argparse
import sys

HELP = ("train a student or the reranker from gin files: sharded over a (data, model) mesh, "
        "checkpointed with Orbax and resumed from --model_dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  from kard_jax.pipeline import flags
  flags.add_gin_flags(parser)
  parser.add_argument("--model_dir", default=None,
                      help="run directory (checkpoints, summaries, config.gin); also binds the "
                      "MODEL_DIR gin macro. An existing run there is resumed.")
  parser.epilog = ((parser.epilog or "") + " Example: kard train "
                   "--gin_file=gin_configs/models/t5_small.gin "
                   "--gin_file=gin_configs/runs/finetune.gin "
                   "--gin.MIXTURE_OR_TASK_NAME=\"'kard_obqa_kard'\" --model_dir=/tmp/run")


def run(args: argparse.Namespace) -> int:
  from kard_jax.pipeline import flags

  if not args.gin_file:
    print("kard train: at least one --gin_file is required", file=sys.stderr)
    return 2
  if args.model_dir:
    args.gin_bindings = list(args.gin_bindings) + [f"MODEL_DIR = {args.model_dir!r}"]
  flags.parse_gin(args)

  from kard_jax.training import train as train_lib
  from kard_jax.training import trainer as trainer_lib

  kwargs = {"model_dir": args.model_dir} if args.model_dir else {}
  try:
    result = train_lib.train(**kwargs)
  except trainer_lib.NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  if result.start_step >= result.step:
    print(f"already trained to step {result.step}; nothing to do", file=sys.stderr)
    return 0
  loss = result.train_metrics.get("loss")
  print(f"trained from step {result.start_step} to step {result.step}"
        + (f"; loss {loss:.4f}" if loss is not None else ""), file=sys.stderr)
  return 0
