"""Parsing gin files: where they resolve, a clear error for a missing one, the parse itself.

Gin's configuration is one process-wide table, and the process edge owns it: `kard COMMAND`
(`kard_jax.cli.flags.parse_gin`) parses its files and flags once, and `kard pipeline` reads
every stage's gin files into typed configs before any stage runs
(`kard_jax.cli.flags.read_gin`). Below the edge nothing parses or clears gin; library code
reads gin's current bindings only where asked to build a config from them (e.g.
`training.train.config_from_gin`).
"""

from __future__ import annotations

import os
from typing import Sequence

from kard_jax.data.errors import InputError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def search_paths(extra: Sequence[str] = ()) -> list[str]:
  """Where gin files and their includes resolve: `extra`, the repository root, the working
  directory."""
  return [p for p in extra if p] + [REPO_ROOT, os.getcwd()]


def check_files(files: Sequence[str], paths: Sequence[str]) -> None:
  """InputError naming the first gin file found in none of `paths`."""
  for name in files:
    if not any(os.path.isfile(os.path.join(p, name)) for p in ["", *paths]):
      raise InputError(name, f"gin file not found (searched the working directory and "
                       f"{', '.join(dict.fromkeys(paths))})")


def parse(files: Sequence[str], bindings: Sequence[str] = (),
          extra_search_paths: Sequence[str] = ()) -> None:
  """Parses `files` then `bindings` into gin's configuration (which the caller owns)."""
  import gin  # pylint: disable=import-outside-toplevel

  paths = search_paths(extra_search_paths)
  for p in paths:
    gin.add_config_file_search_path(p)
  check_files(files, paths)
  gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=False)
