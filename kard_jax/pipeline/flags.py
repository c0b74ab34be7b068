"""T5X-style gin flags: --gin_file (repeatable), --gin_search_paths and --gin.KEY=VALUE."""

from __future__ import annotations

import argparse
import os
from typing import Sequence

_GIN_PREFIX = "--gin."


def split_gin_bindings(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """Separates `--gin.KEY=VALUE` arguments (which argparse cannot declare) from the rest.

  Returns (other_args, bindings) where each binding is the gin statement "KEY = VALUE".
  """
  rest, bindings = [], []
  for arg in argv:
    if arg.startswith(_GIN_PREFIX):
      body = arg[len(_GIN_PREFIX):]
      if "=" not in body:
        raise SystemExit(f"kard: {arg!r} must have the form --gin.KEY=VALUE")
      key, value = body.split("=", 1)
      bindings.append(f"{key} = {value}")
    else:
      rest.append(arg)
  return rest, bindings


def add_gin_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--gin_file", action="append", default=[],
                      help="gin file to parse (repeatable; later files override earlier ones)")
  parser.add_argument("--gin_search_paths", default="",
                      help="comma-separated directories where gin includes are resolved "
                      "(the repository's root is always searched)")
  parser.epilog = ((parser.epilog or "") +
                   " Any --gin.KEY=VALUE binds a gin parameter after the files are parsed, "
                   "e.g. --gin.train.total_steps=100 or --gin.MODEL_DIR=\"'/tmp/run'\".").strip()


def parse_gin(args: argparse.Namespace) -> None:
  """Makes gin's global config exactly args.gin_file plus args.gin_bindings.

  The config is cleared first: a command's settings are its files and flags, never what an
  earlier command in the same process (the pipeline runs several) left bound.
  """
  import gin  # imported here so commands that need no gin start fast

  gin.clear_config()

  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  paths = [p for p in getattr(args, "gin_search_paths", "").split(",") if p] + [root, os.getcwd()]
  for p in paths:
    gin.add_config_file_search_path(p)
  for name in getattr(args, "gin_file", []) or []:
    if not any(os.path.isfile(os.path.join(p, name)) for p in ["", *paths]):
      from kard_jax.data.errors import InputError  # pylint: disable=import-outside-toplevel
      raise InputError(name, f"gin file not found (searched the working directory and "
                       f"{', '.join(dict.fromkeys(paths))})")
  gin.parse_config_files_and_bindings(
      list(getattr(args, "gin_file", []) or []), list(getattr(args, "gin_bindings", []) or []),
      finalize_config=False)
