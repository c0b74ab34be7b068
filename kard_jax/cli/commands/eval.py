"""`kard eval`: decode a task's evaluation split with a checkpoint, vote, write predictions."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from kard_jax.cli import flags

HELP = ("decode a SeqIO task's evaluation split with a run's newest checkpoint (greedy, sampling "
        "with self-consistency voting, or beam search); write predictions.jsonl and metrics.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--model_dir", required=True,
                      help="training run directory (model_config.json + checkpoint_<step>/)")
  parser.add_argument("--task", required=True, help="SeqIO task, e.g. kard_obqa_kard_bm25")
  parser.add_argument("--split", default="test", help="split to decode (default: test)")
  method = parser.add_mutually_exclusive_group()
  method.add_argument("--greedy", action="store_true", help="one argmax decode per input")
  method.add_argument("--beams", type=flags.non_negative_int, default=0, metavar="N",
                      help="beam search with N beams; the best beam is the prediction")
  parser.add_argument("--num_samples", type=flags.positive_int, default=5,
                      help="sampled rationales per input, combined by majority vote (default 5)")
  parser.add_argument("--temperature", type=flags.non_negative_float, default=1.0)
  parser.add_argument("--top_k", type=flags.non_negative_int, default=50,
                      help="0 disables top-k (default 50)")
  parser.add_argument("--top_p", type=flags.probability, default=0.95,
                      help="1 disables top-p (default 0.95)")
  parser.add_argument("--alpha", type=flags.non_negative_float, default=0.6,
                      help="beam search length penalty")
  parser.add_argument("--max_decode_length", type=flags.positive_int, default=256,
                      help="most tokens generated per decode (default 256)")
  parser.add_argument("--max_input_length", type=flags.positive_int, default=None,
                      help="truncate inputs to this many tokens (default: no truncation)")
  parser.add_argument("--batch_size", type=flags.positive_int, default=16,
                      help="inputs per compiled decoding call (default 16)")
  parser.add_argument("--seed", type=int, default=0, help="sampling seed")
  parser.add_argument("--mesh_shape", default="-1,1",
                      help="(data, model) device mesh; -1 takes the remaining devices")
  parser.add_argument("--data_dir", default=None,
                      help="prepared benchmarks to register tasks from (default: $KARD_DATA_DIR "
                      "or work_dir/data)")
  parser.add_argument("--module", default="tasks",
                      help="module imported to register the task (default: tasks)")
  parser.add_argument("--out", default=None,
                      help="output folder (default: MODEL_DIR/decodes/TASK.SPLIT.stepSTEP)")
  parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")


def decode_config(args: argparse.Namespace):
  from kard_jax.decoding.adapters import DecodeConfig

  common = dict(max_new_tokens=args.max_decode_length)
  if args.greedy:
    return DecodeConfig(method="greedy", **common)
  if args.beams:
    return DecodeConfig(method="beam", num_decodes=args.beams, alpha=args.alpha, **common)
  return DecodeConfig(method="sample", num_decodes=args.num_samples,
                      temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, **common)


def _register_tasks(args: argparse.Namespace) -> None:
  module = importlib.import_module(args.module)
  if args.data_dir:
    register_all = getattr(module, "register_all", None)
    if register_all is None:
      raise SystemExit(f"kard eval: --data_dir needs a module with register_all (got {args.module})")
    register_all(os.path.abspath(args.data_dir))


def run(args: argparse.Namespace) -> int:
  from kard_jax.data.errors import InputError

  try:
    config = decode_config(args)
    mesh_shape = tuple(int(s) for s in args.mesh_shape.split(","))
  except ValueError as e:
    print(f"kard eval: {e}", file=sys.stderr)
    return 2
  if not os.path.exists(os.path.join(args.model_dir, "model_config.json")):
    raise InputError(args.model_dir, "not a training run (no model_config.json)")

  import seqio

  from kard_jax.decoding import evaluate
  from kard_jax.training import partitioning

  _register_tasks(args)
  if args.task not in seqio.TaskRegistry.names():
    print(f"kard eval: unknown task {args.task!r} (is its benchmark prepared and the module "
          f"{args.module!r} registering it?)", file=sys.stderr)
    return 2
  mesh = partitioning.create_mesh(mesh_shape)
  if args.batch_size % mesh.shape["data"]:
    print(f"kard eval: --batch_size {args.batch_size} must be a multiple of the mesh's data axis "
          f"({mesh.shape['data']} devices)", file=sys.stderr)
    return 2
  try:
    metrics, out_dir = evaluate.evaluate(
        args.model_dir, args.task, config, split=args.split, batch_size=args.batch_size,
        max_input_length=args.max_input_length, out_dir=args.out, seed=args.seed, mesh=mesh,
        progress=not args.no_progress)
  except FileNotFoundError as e:
    raise InputError(args.model_dir, str(e)) from None
  print(evaluate.summary_line(metrics))
  print(f"wrote {os.path.join(out_dir, evaluate.PREDICTIONS)} and "
        f"{os.path.join(out_dir, evaluate.METRICS)}", file=sys.stderr)
  return 0
