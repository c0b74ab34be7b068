"""Gin files in, typed training configs out.

Gin's configuration is one process-wide table. A command owns it: `kard COMMAND` (see
`kard_jax.cli.flags.parse_gin`) parses its files and flags into it once, at the process edge.
A pipeline stage needs what a gin file describes as objects (a student: one gin file per method,
bound to the vocabulary an earlier stage trained), so it reads them in `scoped`: the table holds
exactly those files for one block, in which the stage builds its typed config, and is empty after
it. The stage then runs on the built objects, with no gin left to consult.

  with gin_config.scoped([gin_file], bindings):
    config = train_lib.config_from_gin(model_dir=...)   # built objects; no gin needed later
  train_lib.run(config)

`search_paths` and `check_files` are shared with the command line.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Sequence

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


@contextlib.contextmanager
def scoped(files: Sequence[str], bindings: Sequence[str] = (),
           extra_search_paths: Sequence[str] = ()) -> Iterator[None]:
  """Gin's configuration is exactly `files` + `bindings` for the block, and empty after it.

  For code below the process edge that needs what a gin file describes as objects: read them
  inside the block, use them after it. Nothing parsed here outlives the block, and nothing
  parsed before it (a command's own files, another stage's) leaks into it.
  """
  import gin  # pylint: disable=import-outside-toplevel

  gin.clear_config()
  try:
    parse(files, bindings, extra_search_paths)
    yield
  finally:
    gin.clear_config()


def query(files: Sequence[str], bindings: Sequence[str], name: str,
          default: Any = None) -> Any:
  """The value `name` (a macro `%NAME` or `configurable.param`) has under `files` + `bindings`,
  or `default` when they bind none."""
  import gin  # pylint: disable=import-outside-toplevel

  with scoped(files, bindings):
    try:
      return gin.query_parameter(name)
    except ValueError:
      return default
