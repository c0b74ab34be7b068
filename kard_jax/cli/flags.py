"""The flag layer shared by every `kard` command: value validators, the parser, gin flags.

Every flag value is checked where the flag is declared, so a bad value is refused before a
command does anything, with one line on stderr and exit status 2 (never a traceback):

  $ kard teach --n 0 ...
  kard teach: error: argument --n: must be an integer >= 1, got '0' (kard teach --help)

How a command adopts it (`kard plan`, `kard serve` and any later command do the same):

  * give numeric and URL flags a validator as their `type=`:
        parser.add_argument("--n", type=flags.positive_int, default=10)
        parser.add_argument("--rpm", type=flags.positive_float, default=None)
        parser.add_argument("--base_url", type=flags.http_url, default=None)
    The stock ones are positive_int / non_negative_int / positive_float / non_negative_float /
    probability (0 < p <= 1) / fraction (0 < x < 1) / http_url; `int_range` and `float_range`
    build others (`flags.int_range(2, 64)`). argparse applies them to every value given on the
    command line (and to string defaults); defaults written as numbers are trusted.
  * the `kard` entry point (cli/main.py) builds every command's parser as a
    `flags.ArgumentParser` (its sub-parsers too), whose errors are that single line with exit 2.
  * a problem only visible across flags (`--samples_per_request` larger than `--n`, a required
    pair) is raised from the command's `run` as `flags.UsageError("...")`: the entry point prints
    it as one line and exits 2 the same way.

The gin flags of T5X (`--gin_file`, repeatable, `--gin_search_paths`, `--gin.KEY=VALUE`) live here
too.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import urllib.parse
from typing import Any, Callable, NoReturn, Sequence

_GIN_PREFIX = "--gin."


# --- validators: argparse `type=` callables -----------------------------------------------------

class UsageError(Exception):
  """A flag combination a command refuses; the entry point prints it as one line, exit 2."""


def _number(text: str, kind: type) -> int | float:
  try:
    value = kind(text)
  except (TypeError, ValueError):
    raise argparse.ArgumentTypeError(
        f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
  if isinstance(value, float) and not math.isfinite(value):
    raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
  return value


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
  """A validator for integers in [low, high] (either bound may be None)."""
  def parse(text: str) -> int:
    value = _number(text, int)
    if (low is not None and value < low) or (high is not None and value > high):
      raise argparse.ArgumentTypeError(f"must be an integer {_bounds(low, high, False)}, "
                                       f"got {text!r}")
    return value
  parse.__name__ = f"int_range({low}, {high})"
  return parse


def float_range(low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
  """A validator for finite numbers between low and high (open or closed at either end)."""
  def parse(text: str) -> float:
    value = _number(text, float)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
      raise argparse.ArgumentTypeError(
          f"must be a number {_bounds(low, high, low_open, high_open)}, got {text!r}")
    return value
  parse.__name__ = f"float_range({low}, {high})"
  return parse


def _bounds(low, high, low_open: bool, high_open: bool = False) -> str:
  if low is not None and high is not None:
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
  if low is not None:
    return f"{'>' if low_open else '>='} {low:g}"
  return f"{'<' if high_open else '<='} {high:g}"


positive_int = int_range(1)
non_negative_int = int_range(0)
positive_float = float_range(0.0, low_open=True)
non_negative_float = float_range(0.0)
probability = float_range(0.0, 1.0, low_open=True)  # top_p and the like: (0, 1]
fraction = float_range(0.0, 1.0, low_open=True, high_open=True)  # a share held out: (0, 1)


def http_url(text: str) -> str:
  """An http:// or https:// URL with a host (an endpoint's base URL)."""
  try:
    url = urllib.parse.urlsplit(text)
    url.port  # pylint: disable=pointless-statement  (a bad port raises ValueError)
  except ValueError as e:
    raise argparse.ArgumentTypeError(f"must be an http(s) URL, got {text!r} ({e})") from None
  if url.scheme not in ("http", "https") or not url.hostname:
    raise argparse.ArgumentTypeError(
        f"must be an http:// or https:// URL with a host, got {text!r}")
  return text


# --- the parser -----------------------------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
  """argparse, with errors as one line (`PROG: error: MESSAGE (PROG --help)`) and exit 2."""

  def error(self, message: str) -> NoReturn:
    self.exit(2, f"{self.prog}: error: {' '.join(message.split())} ({self.prog} --help)\n")


def usage_error(prog: str, error: UsageError) -> int:
  """Prints a command's UsageError as one line; returns the exit status, 2."""
  print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
  return 2


# --- gin ------------------------------------------------------------------------------------------

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
  earlier command in the same process left bound. This is the process edge: below it, nothing
  parses or clears gin (`read_gin` reads further files here, for commands that build several
  configs).
  """
  import gin  # imported here so commands that need no gin start fast

  from kard_jax.training import gin_config  # pylint: disable=import-outside-toplevel

  gin.clear_config()
  gin_config.parse(list(getattr(args, "gin_file", []) or []),
                   list(getattr(args, "gin_bindings", []) or []),
                   getattr(args, "gin_search_paths", "").split(","))


def read_gin(files: Sequence[str], bindings: Sequence[str], build: Callable[[], Any],
             extra_search_paths: Sequence[str] = ()) -> Any:
  """What `build()` returns while gin's configuration is exactly `files` + `bindings`.

  For a command that needs several configurations (`kard pipeline`: the reranker's and each
  student's): each is read here, at the process edge, into built objects that need no gin
  afterwards. Gin's configuration is cleared before the parse and after the build (also after an
  error), so nothing parsed earlier leaks in and nothing read here outlives the call.
  """
  import gin  # pylint: disable=import-outside-toplevel

  from kard_jax.training import gin_config  # pylint: disable=import-outside-toplevel

  gin.clear_config()
  try:
    gin_config.parse(files, bindings, extra_search_paths)
    return build()
  finally:
    gin.clear_config()
