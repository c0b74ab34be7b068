"""`kard pipeline`: the whole method on one benchmark, from data to the results table.

  kard pipeline                                   # the synthetic benchmark, defaults (./run.sh)
  kard pipeline --config gin_configs/strategyqa/pipeline_smoke.gin
  kard pipeline --only train --only eval          # just those stages (inputs must be finished)
  kard pipeline --force eval/kard_bm25            # redo one stage
  kard pipeline --gin.PipelineConfig.methods="['answer_only', 'kard_bm25']"

Stages write content-addressed directories under --work_dir (default work_dir/): a second run
reuses every finished stage, and a changed setting re-runs only what depends on it. The table
goes to the console and RESULTS_DIR/NAME.md, with NAME.json (what it is made from, including
this command) and NAME.png.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

HELP = ("run the whole KARD pipeline (data, vocabulary, index, teacher, retrieval, reranker, every "
        "method's student, evaluation, results table and plot); finished stages are reused")

DEFAULT_CONFIG = os.path.join("gin_configs", "synthetic", "pipeline.gin")
STAGES = ("data", "kb", "teacher", "vocab", "index", "retrieval", "reranker", "train", "eval",
          "scicot_rationales", "teacher_predictions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.formatter_class = argparse.RawDescriptionHelpFormatter
  parser.epilog = __doc__.split("\n\n", 1)[1]
  parser.add_argument("--config", action="append", default=None, metavar="FILE.gin",
                      help=f"pipeline gin file(s) (default {DEFAULT_CONFIG})")
  parser.add_argument("--gin_search_paths", default="",
                      help="comma-separated directories where gin includes are resolved")
  parser.add_argument("--work_dir", default="work_dir",
                      help="where stage outputs and the assembled data live (default work_dir)")
  parser.add_argument("--only", action="append", default=None, metavar="STAGE",
                      help="run only these stages (repeatable): a family "
                      f"({', '.join(STAGES)}), a method (kard_bm25) or a stage name "
                      "(train/kard_bm25, synthetic_e1000/eval); others must be finished")
  parser.add_argument("--force", action="append", default=[], metavar="STAGE",
                      help="re-run these stages even when finished (same names as --only)")
  parser.add_argument("--results_dir", default=None,
                      help="where the table and plot go (default: the config's, results/)")
  parser.add_argument("--no_compile_cache", action="store_true",
                      help="do not keep compiled XLA programs in WORK_DIR/jax_cache")


def _command_line(argv_tail) -> str:
  return shlex.join(["kard", "pipeline", *argv_tail])


def run(args: argparse.Namespace) -> int:
  import gin  # pylint: disable=import-outside-toplevel

  from kard_jax.pipeline import config as config_lib  # pylint: disable=import-outside-toplevel
  from kard_jax.cli import flags  # pylint: disable=import-outside-toplevel
  from kard_jax.data.errors import InputError  # pylint: disable=import-outside-toplevel

  files = args.config or [DEFAULT_CONFIG]
  gin_args = argparse.Namespace(gin_file=files, gin_search_paths=args.gin_search_paths,
                                gin_bindings=list(getattr(args, "gin_bindings", [])))
  flags.parse_gin(gin_args)  # the process edge: gin's config is the pipeline's files alone
  config = config_lib.PipelineConfig()
  if args.results_dir:
    import dataclasses  # pylint: disable=import-outside-toplevel
    config = dataclasses.replace(config, results_dir=args.results_dir)
  gin.clear_config()  # the pipeline's settings are read
  try:  # every stage's gin files, read here once; no stage reads gin
    stage_configs = read_stage_configs(config)
  except InputError as e:
    print(f"kard pipeline: {e}", file=sys.stderr)
    return 2
  except ValueError as e:  # a binding or value the gin files refuse (gin names the line)
    print(f"kard pipeline: reading the stages' gin files: {e}", file=sys.stderr)
    return 2

  os.makedirs(args.work_dir, exist_ok=True)
  _setup_jax(args.work_dir, cache=not args.no_compile_cache)

  from kard_jax.pipeline import runner  # pylint: disable=import-outside-toplevel
  from kard_jax.report import tables  # pylint: disable=import-outside-toplevel
  from kard_jax.pipeline.stages import MissingStage  # pylint: disable=import-outside-toplevel

  command = getattr(args, "command_line", None) or _command_line(sys.argv[2:])
  try:
    outcome = runner.run(config, args.work_dir, stage_configs, only=args.only,
                         force=args.force, command=command)
  except MissingStage as e:
    print(f"kard pipeline: {e}", file=sys.stderr)
    return 2
  print(tables.markdown(outcome.results))
  for kind, path in sorted(outcome.paths.items()):
    print(f"wrote {path}", file=sys.stderr)
  timing = outcome.results["timing"]
  print(f"pipeline finished in {timing['total_seconds']:.0f} s ({timing['ran']} stages ran, "
        f"{timing['reused']} reused)", file=sys.stderr)
  return 0


def read_stage_configs(config):
  """What `config`'s stages build from gin files (`runner.gin_reads`), each read in its own
  gin configuration at this edge: a `runner.StageConfigs`."""
  from kard_jax.cli import flags  # pylint: disable=import-outside-toplevel
  from kard_jax.pipeline import runner  # pylint: disable=import-outside-toplevel

  return runner.StageConfigs.from_built(
      {key: flags.read_gin(read.files, read.bindings, read.build)
       for key, read in runner.gin_reads(config).items()})


def _setup_jax(work_dir: str, cache: bool) -> None:
  """A persistent compilation cache: identical programs (same model, same shapes) compile once,
  across methods, benchmark variants and runs."""
  import jax  # pylint: disable=import-outside-toplevel

  if cache:
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(
        os.path.join(work_dir, "jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
