"""Errors about bad input that name the file, the line and the problem."""

from __future__ import annotations


class InputError(ValueError):
  """Bad user input: a file, optionally a 1-based line, and what was wrong.

  The command line catches this and prints `error: FILE:LINE: MESSAGE` with a
  non-zero exit, so users never see a traceback from deep inside for bad data.
  """

  def __init__(self, path, message: str, line: int | None = None):
    self.path = str(path)
    self.line = line
    self.message = message
    where = self.path if line is None else f"{self.path}:{line}"
    super().__init__(f"{where}: {message}")
