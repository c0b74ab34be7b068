"""`kard train`: gin files and flags -> `training.train.TrainConfig` -> `training.train.run`
(T5X's train.py flags)."""

from __future__ import annotations

import argparse
import sys

HELP = ("train a student or the reranker from gin files: sharded over a (data, model) mesh, "
        "checkpointed with Orbax and resumed from --model_dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  from kard_jax.cli import flags
  flags.add_gin_flags(parser)
  parser.add_argument("--model_dir", default=None,
                      help="run directory (checkpoints, summaries, config.gin); also binds the "
                      "MODEL_DIR gin macro. An existing run there is resumed.")
  group = parser.add_argument_group(
      "multi-process training", "one process per host (or per GPU); all run the same command. "
      "Unset values come from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID.")
  group.add_argument("--num_processes", type=int, default=None,
                     help="number of processes; above 1, jax.distributed.initialize is called")
  group.add_argument("--process_id", type=int, default=None, help="this process's rank, 0-based")
  group.add_argument("--coordinator_address", default=None,
                     help="HOST:PORT of process 0's coordination service")
  group.add_argument("--distributed_auto", action="store_true",
                     help="call jax.distributed.initialize() with no coordinates (Cloud TPU pods, "
                     "SLURM: JAX detects the cluster)")
  group.add_argument("--heartbeat_timeout_s", type=int, default=100,
                     help="a process silent this long is declared dead and every process stops "
                     "with an error (default %(default)s)")
  group.add_argument("--initialization_timeout_s", type=int, default=300,
                     help="how long to wait for all processes to join (default %(default)s)")
  parser.epilog = ((parser.epilog or "") + " Example: kard train "
                   "--gin_file=gin_configs/models/t5_small.gin "
                   "--gin_file=gin_configs/runs/finetune.gin "
                   "--gin.MIXTURE_OR_TASK_NAME=\"'kard_obqa_kard'\" --model_dir=/tmp/run")


def run(args: argparse.Namespace) -> int:
  from kard_jax.cli import flags

  if not args.gin_file:
    print("kard train: at least one --gin_file is required", file=sys.stderr)
    return 2
  from kard_jax.training import partitioning

  distributed = partitioning.DistributedConfig(
      coordinator_address=args.coordinator_address, num_processes=args.num_processes,
      process_id=args.process_id, auto_detect=args.distributed_auto,
      heartbeat_timeout_s=args.heartbeat_timeout_s,
      initialization_timeout_s=args.initialization_timeout_s)
  try:
    partitioning.resolve_distributed(distributed)
  except ValueError as e:
    print(f"kard train: {e}", file=sys.stderr)
    return 2
  partitioning.maybe_initialize_distributed(distributed)

  if args.model_dir:
    args.gin_bindings = list(args.gin_bindings) + [f"MODEL_DIR = {args.model_dir!r}"]
  flags.parse_gin(args)

  import jax

  from kard_jax.training import train as train_lib
  from kard_jax.training import trainer as trainer_lib

  overrides = {"model_dir": args.model_dir} if args.model_dir else {}
  try:
    result = train_lib.run(train_lib.config_from_gin(**overrides))
  except trainer_lib.NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  if jax.process_index() != 0:  # process 0 speaks for the run
    return 0
  if result.start_step >= result.step:
    print(f"already trained to step {result.step}; nothing to do", file=sys.stderr)
    return 0
  loss = result.train_metrics.get("loss")
  print(f"trained from step {result.start_step} to step {result.step}"
        + (f"; loss {loss:.4f}" if loss is not None else ""), file=sys.stderr)
  return 0
