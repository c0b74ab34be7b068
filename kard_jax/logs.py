"""Where a command's messages go: progress and results on the console, library logs in a file.

SeqIO, Orbax, TensorFlow and JAX log freely (absl warnings such as "Metadata file does not
exist" or "Features not in `features_length` will be removed during packing", TensorFlow's and
XLA's C++ start-up lines, Python `warnings`). `routed` sends all of them to
RUN_DIR/logs/COMMAND-YYYYmmdd-HHMMSS.log for the length of one command:

  * Python `logging` (absl's Python logger included, which Orbax and SeqIO use) goes to the file:
    libraries' records at WARNING and above, our own (`kard_jax.*`, `kard.*`) from INFO. The
    console gets only our own at WARNING and above, written as "warning: ..." (`console_level`
    lowers that for a logger whose messages are a command's output, such as `kard serve`'s).
  * `warnings.warn` (JAX's, NumPy's) is captured into logging, so into the file.
  * File descriptor 2 is pointed at a pipe into a small `tee` process that appends to the file,
    so what C++ libraries write to stderr (TensorFlow's and jaxlib's absl logging, which ignores
    TF_CPP_MIN_LOG_LEVEL for the lines it writes before `absl::InitializeLog()`; XLA's) lands
    there too. The tee also copies a fatal C++ record (absl's "F1207 ...", a failed CHECK, a
    crash report) and all that follows to the console: the process dies with it as its only
    explanation, and being a separate process the tee outlives an abort. `sys.stderr` is
    re-opened on the console's original descriptor, so tqdm's progress bars, our
    `print(..., file=sys.stderr)` and Python tracebacks still reach the terminal.

Everything is restored when the command returns, so `cli.main` can run in a test process. A
command run inside another (the pipeline's stages) writes to the outer command's file.
`kard --verbose COMMAND` or KARD_VERBOSE=1 keeps everything on the console as well (the file then
holds the Python-level records only).
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import logging
import os
import subprocess
import sys
import time
from typing import Iterator

VERBOSE_ENV = "KARD_VERBOSE"
LOG_DIR_ENV = "KARD_LOG_DIR"
OWN_LEVEL = logging.INFO  # our loggers, in the file (and on the console with --verbose)
LIBRARY_LEVEL = logging.WARNING  # everyone else's (Orbax alone logs ~100 INFO lines a checkpoint)
_OWN_PREFIXES = ("kard_jax", "kard.")
_console_levels: dict[str, int] = {}
_active: str | None = None  # the log file of the command running now, if any


def console_level(logger_name: str, level: int) -> None:
  """Shows `logger_name`'s records from `level` up on the console (default: WARNING and up)."""
  _console_levels[logger_name] = level
  logging.getLogger(logger_name).setLevel(level)


def verbose_from_env() -> bool:
  return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def current_log() -> str | None:
  """The file the running command logs to (None outside a command)."""
  return _active


def _own(name: str) -> bool:
  return name.startswith(_OWN_PREFIXES) or name == "kard"


class _FileFilter(logging.Filter):
  """Ours from INFO, libraries' from WARNING."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= (OWN_LEVEL if _own(record.name) else LIBRARY_LEVEL)


class _ConsoleFilter(logging.Filter):
  """Our own loggers at WARNING and up (or their `console_level`); nothing from libraries."""

  def filter(self, record: logging.LogRecord) -> bool:
    name = record.name
    if not _own(name):
      return False
    threshold = logging.WARNING
    for prefix, level in _console_levels.items():
      if name == prefix or name.startswith(prefix + "."):
        threshold = level
    return record.levelno >= threshold


class _ConsoleFormatter(logging.Formatter):
  """INFO as "TIME message" (a command's own narration); WARNING and up as "warning: message"."""

  def __init__(self):
    super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

  def format(self, record: logging.LogRecord) -> str:
    if record.levelno >= logging.WARNING:
      return f"{record.levelname.lower()}: {record.getMessage()}"
    return super().format(record)


def _fallback_dir() -> str:
  """$KARD_LOG_DIR, else ~/.cache/kard_jax/logs: for commands without a run directory."""
  if os.environ.get(LOG_DIR_ENV):
    return os.environ[LOG_DIR_ENV]
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "kard_jax", "logs")


def _new_log(command: str, run_dirs: list[str | None]) -> str:
  """Creates RUN_DIR/logs/COMMAND-STAMP.log (empty) in the first of `run_dirs` that can be
  written, else in the fallback directory; returns its path."""
  stamp = time.strftime("%Y%m%d-%H%M%S")
  folders = [os.path.join(d, "logs") for d in run_dirs if d] + [_fallback_dir()]
  for folder in folders:
    # Commands started in the same second (the processes of a multi-process run, or commands
    # run in one test process) add their pid, then a count.
    names = [f"{command}-{stamp}", f"{command}-{stamp}-{os.getpid()}"]
    names += [f"{names[1]}-{i}" for i in range(1, 1000)]
    for name in names:
      path = os.path.join(folder, name + ".log")
      try:
        os.makedirs(folder, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return path
      except FileExistsError:
        continue
      except OSError:
        break
  raise OSError(f"no writable directory for the log file among {folders}")


# The process behind file descriptor 2 while a command runs (see the module's docstring).
_TEE = r"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
fatal = re.compile(rb"^F\d{4} |^\*\*\* |Check failed|^terminate called|^Fatal Python error")
log, console, seen = open(sys.argv[1], "ab", buffering=0), sys.stdout.buffer, False
for line in sys.stdin.buffer:
  log.write(line)
  seen = seen or bool(fatal.search(line))
  if seen:
    console.write(line)
    console.flush()
"""


def _writes_to_stderr(handler: logging.Handler) -> bool:
  stream = getattr(handler, "stream", None)
  return (type(handler).__name__ == "ABSLHandler"
          or (isinstance(handler, logging.StreamHandler)
              and not isinstance(handler, logging.FileHandler)
              and stream is not None and stream in (sys.stderr, sys.__stderr__)))


def _fd_of(stream) -> int | None:
  try:
    return stream.fileno()
  except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
    return None


@contextlib.contextmanager
def routed(command: str, *run_dirs: str | None, verbose: bool = False, enabled: bool = True,
           expected: tuple[type[BaseException], ...] = ()) -> Iterator[str | None]:
  """Routes library logging to RUN_DIR/logs/COMMAND-STAMP.log while the block runs, RUN_DIR the
  first of `run_dirs` given and writable (else $KARD_LOG_DIR, default ~/.cache/kard_jax/logs); yields
  the file's path. An exception from the block that is not one of `expected` (a traceback on
  the way) is followed by one line naming the file. Inside another `routed` block, or with
  `enabled` False, does nothing."""
  global _active
  if _active is not None or not enabled:
    yield _active
    return
  verbose = verbose or verbose_from_env()
  path = _new_log(command, list(run_dirs))  # the tee and the file handler append to it
  root = logging.getLogger()
  saved_level, saved_handlers = root.level, list(root.handlers)
  # Our handler must be on the root before any library logs: absl's `warning()` calls
  # logging.basicConfig() (a stderr handler) when the root has none, and TensorFlow's logger
  # adds its own stderr handler in the same case.
  detached = [(root, h) for h in saved_handlers if _writes_to_stderr(h)]
  for name, logger in list(logging.root.manager.loggerDict.items()):
    if isinstance(logger, logging.Logger) and name != "root":
      detached += [(logger, h) for h in logger.handlers if _writes_to_stderr(h)]
  for logger, h in detached:
    logger.removeHandler(h)

  saved_stderr, console_fd, tee, own_faulthandler = sys.stderr, None, None, False
  if not verbose:
    sys.stderr.flush()
    console_fd = os.dup(2)  # the console (or a test's capture), kept on a new descriptor
    read_end, write_end = os.pipe()
    tee = subprocess.Popen([sys.executable, "-I", "-S", "-c", _TEE, path], stdin=read_end,
                           stdout=console_fd, stderr=console_fd)
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    if _fd_of(saved_stderr) == 2:  # Python's own stderr follows the console, not descriptor 2
      sys.stderr = io.TextIOWrapper(io.FileIO(console_fd, "w", closefd=False),
                                    encoding=saved_stderr.encoding or "utf-8",
                                    errors="backslashreplace", line_buffering=True,
                                    write_through=True)
      if not faulthandler.is_enabled():  # a crash's Python stack on the console
        faulthandler.enable(sys.stderr)
        own_faulthandler = True

  file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
  file_handler.addFilter(_FileFilter())
  file_handler.setFormatter(logging.Formatter(
      "%(asctime)s %(levelname)s %(name)s: %(message)s"))
  console = logging.StreamHandler(sys.stderr)
  console.setFormatter(_ConsoleFormatter())
  if verbose:
    console.addFilter(_FileFilter())
  else:
    console.addFilter(_ConsoleFilter())
  root.addHandler(file_handler)
  root.addHandler(console)
  root.setLevel(min(OWN_LEVEL, saved_level or logging.WARNING))
  logging.captureWarnings(True)
  _active, failed = path, True
  try:
    yield path
    failed = False
  except BaseException as e:
    if not isinstance(e, (KeyboardInterrupt, SystemExit, *expected)):
      print(f"(library messages of this run: {path})", file=sys.stderr)
    raise
  finally:
    _active = None
    logging.captureWarnings(False)
    root.removeHandler(console)
    root.removeHandler(file_handler)
    file_handler.close()
    root.setLevel(saved_level)
    for logger, h in detached:
      logger.addHandler(h)
    if not verbose:
      if own_faulthandler:
        faulthandler.disable()
      sys.stderr.flush()
      sys.stderr = saved_stderr
      os.dup2(console_fd, 2)  # closes the pipe's last write end here: the tee drains and exits
      os.close(console_fd)
      try:
        tee.wait(timeout=30)
      except subprocess.TimeoutExpired:  # a child process still holds the pipe; it finishes alone
        pass
    if not failed and os.path.getsize(path) == 0:  # a quiet command leaves no file behind
      os.remove(path)
