"""The `kard` command line: one subcommand per pipeline stage.

Subcommand modules are imported only when chosen, so `kard --help` and light commands start fast
(JAX, TensorFlow and PyTorch are never imported just to print help).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from kard_jax import logs
from kard_jax.data.errors import InputError
from kard_jax.cli import flags

# name -> (module under kard_jax.cli.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("data", "load, convert and summarise benchmarks; generate the synthetic benchmark"),
    "vocab": ("vocab", "train a SentencePiece vocabulary on a benchmark and its knowledge base"),
    "retrieval": ("retrieval", "build BM25 indexes, retrieve passages, evaluate retrieval recall"),
    "teach": ("teach", "collect teacher rationales from an OpenAI-compatible endpoint (resumable)"),
    "convert": ("convert", "convert Hugging Face checkpoints to and from our parameter trees"),
    "train": ("train", "train a student or the reranker from gin files (sharded, resumable)"),
    "eval": ("eval", "decode a task with a checkpoint, vote across samples, write predictions"),
    "rerank": ("rerank", "train, evaluate and apply the KARD passage reranker"),
    "pipeline": ("pipeline", "run the whole KARD pipeline (default: the synthetic benchmark)"),
    "plan": ("plan", "compile (never run) the train step and decoder for a mesh: memory, FLOPs, fit"),
    "serve": ("serve", "serve a trained student as an OpenAI-compatible HTTP API with its sources"),
}
# Commands whose library logs stay on the console: `plan` may re-run itself in a child process,
# which would inherit the log file as its console.
UNROUTED = frozenset({"plan"})


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="kard", usage="kard [-h] [-v] COMMAND ...",
      description="Knowledge-augmented reasoning distillation: distil an LLM's rationales into "
      "small T5/GPT students that read retrieved passages.",
      epilog="Run `kard COMMAND --help` for a command's options.")
  parser.add_argument("-v", "--verbose", action="store_true",
                      help="library logs (absl, TensorFlow, JAX) on the console too; by default "
                      f"they go to RUN_DIR/logs/COMMAND-TIME.log only ({logs.VERBOSE_ENV}=1 too)")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  for name, (_, help_text) in COMMANDS.items():
    sub.add_parser(name, help=help_text, add_help=False)
  return parser


def _load(name: str):
  module_name, _ = COMMANDS[name]
  try:
    return importlib.import_module(f"kard_jax.cli.commands.{module_name}")
  except ModuleNotFoundError as e:
    if e.name == f"kard_jax.cli.commands.{module_name}":
      raise SystemExit(f"kard: the '{name}' command is not available in this version") from None
    raise


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  argv, gin_bindings = flags.split_gin_bindings(argv)
  verbose = bool(argv) and argv[0] in ("-v", "--verbose")
  argv = argv[1:] if verbose else argv
  if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
    parser = build_parser()
    if argv and argv[0] not in ("-h", "--help"):
      parser.print_usage(sys.stderr)
      print(f"kard: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}",
            file=sys.stderr)
      return 2
    parser.print_help()
    return 0
  name = argv[0]
  module = _load(name)
  parser = flags.ArgumentParser(prog=f"kard {name}", description=module.HELP)
  module.add_arguments(parser)
  args = parser.parse_args(argv[1:])
  args.gin_bindings = gin_bindings
  try:
    with logs.routed(name, *_run_dirs(name, args), verbose=verbose, enabled=name not in UNROUTED,
                     expected=(InputError, flags.UsageError)):
      return int(module.run(args) or 0)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except flags.UsageError as e:
    return flags.usage_error(f"kard {name}", e)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130


def _run_dirs(name: str, args: argparse.Namespace) -> list[str | None]:
  """Where a command's log file goes, RUN_DIR/logs/: the run directory the command writes (even
  before it exists), else the first existing one of --work_dir, --model_dir, --data_dir."""
  writes = {"pipeline": "work_dir", "train": "model_dir"}.get(name)
  if name == "rerank" and getattr(args, "rerank_command", None) == "train":
    writes = "model_dir"
  existing = [getattr(args, flag, None) for flag in ("work_dir", "model_dir", "data_dir")]
  return ([getattr(args, writes, None)] if writes else []) + [
      d for d in existing if d and os.path.isdir(d)]


if __name__ == "__main__":
  sys.exit(main())
