"""kard_jax.logs.routed: library logs go to RUN_DIR/logs/COMMAND-TIME.log, ours stay on the
console, and everything is put back afterwards (the subprocess case, a real `kard train`, is in
tests/training/test_train.py)."""

import logging
import os
import sys
import warnings

import pytest
from absl import logging as absl_logging

from kard_jax import logs


def test_library_messages_go_to_the_file_and_ours_to_the_console(tmp_path, capfd):
  root = logging.getLogger()
  handlers_before, level_before = list(root.handlers), root.level
  with logs.routed("train", None, str(tmp_path / "run")) as path:
    assert logs.current_log() == path
    assert os.path.dirname(path) == str(tmp_path / "run" / "logs")
    assert os.path.basename(path).startswith("train-") and path.endswith(".log")
    absl_logging.warning("Metadata file does not exist: /x/_CHECKPOINT_METADATA")
    logging.getLogger("orbax").info("an Orbax INFO line")
    logging.getLogger("kard_jax.training.train").info("mesh over 1 device")
    logging.getLogger("kard_jax.training.checkpoints").warning("checkpoint 10 did not commit")
    warnings.warn("a JAX UserWarning")
    os.write(2, b"W1207 05:20:00.000000 1 cuda_platform.cc:52] a C++ line\n")
    print("train: 100%| progress", file=sys.stderr)
    with logs.routed("eval", str(tmp_path / "inner")) as inner:  # a stage inside the pipeline
      assert inner == path
  assert not (tmp_path / "inner").exists()

  err = capfd.readouterr().err
  assert err == "warning: checkpoint 10 did not commit\ntrain: 100%| progress\n"
  text = open(path, encoding="utf-8").read()
  for line in ("WARNING absl: Metadata file does not exist", "INFO kard_jax.training.train: mesh",
               "WARNING kard_jax.training.checkpoints: checkpoint 10", "a JAX UserWarning",
               "W1207 05:20:00.000000 1 cuda_platform.cc:52] a C++ line"):
    assert line in text, line
  assert "an Orbax INFO line" not in text  # libraries from WARNING only

  # Put back: stderr, the root logger, warnings.
  assert logs.current_log() is None
  assert list(root.handlers) == handlers_before and root.level == level_before
  os.write(2, b"after\n")
  absl_logging.warning("absl after")
  assert "after" in capfd.readouterr().err
  assert "after" not in open(path, encoding="utf-8").read()


def test_a_fatal_cxx_record_reaches_the_console_too(tmp_path, capfd):
  with logs.routed("train", str(tmp_path)) as path:
    os.write(2, b"E1207 05:20:00.1 1 cuda_platform.cc:52] failed call to cuInit\n")
    os.write(2, b"F1207 05:20:01.2 1 client.cc:80] Terminating process because the JAX "
             b"distributed service detected fatal errors\n*** Check failure stack trace: ***\n")
  err = capfd.readouterr().err
  assert "cuInit" not in err
  assert err.startswith("F1207 05:20:01.2 1 client.cc:80] Terminating process") and "***" in err
  text = open(path, encoding="utf-8").read()
  assert "failed call to cuInit" in text and "Check failure stack trace" in text


def test_a_crash_names_the_log_file_and_an_expected_error_does_not(tmp_path, capsys):
  with pytest.raises(ZeroDivisionError):
    with logs.routed("eval", str(tmp_path)) as path:
      1 / 0  # pylint: disable=pointless-statement
  assert capsys.readouterr().err == f"(library messages of this run: {path})\n"
  with pytest.raises(ValueError):
    with logs.routed("eval", str(tmp_path), expected=(ValueError,)):
      raise ValueError("bad input")
  assert capsys.readouterr().err == ""


def test_verbose_keeps_library_logs_on_the_console(tmp_path, capfd, monkeypatch):
  monkeypatch.setenv(logs.VERBOSE_ENV, "1")
  with logs.routed("train", str(tmp_path)) as path:
    absl_logging.warning("Features not in `features_length` will be removed during packing")
    os.write(2, b"a C++ line\n")
  err = capfd.readouterr().err
  assert "will be removed during packing" in err and "a C++ line" in err
  assert "will be removed during packing" in open(path, encoding="utf-8").read()


def test_an_unwritable_run_dir_falls_back_to_KARD_LOG_DIR(tmp_path, monkeypatch):
  blocked = tmp_path / "file"
  blocked.write_text("")  # a file where the run directory would be
  monkeypatch.setenv(logs.LOG_DIR_ENV, str(tmp_path / "fallback"))
  with logs.routed("retrieval", str(blocked)) as path:
    pass
  assert os.path.dirname(path) == str(tmp_path / "fallback")


def test_commands_started_in_the_same_second_get_their_own_files(tmp_path):
  paths = []
  for i in range(3):
    with logs.routed("data", str(tmp_path)) as path:
      paths.append(path)
      absl_logging.warning("run %d", i)
  assert len(set(paths)) == 3
  assert [open(p, encoding="utf-8").read().strip()[-5:] for p in paths] == [
      "run 0", "run 1", "run 2"]
  with logs.routed("data", str(tmp_path)) as quiet:
    pass
  assert not os.path.exists(quiet)  # nothing logged, no file left


def test_kard_logs_in_the_run_directory_and_creates_no_input_directory(tmp_path, monkeypatch):
  from kard_jax.cli import main as cli
  from kard_jax.cli.commands import vocab

  seen = []
  monkeypatch.setattr(vocab, "run", lambda args: seen.append(logs.current_log()) or 0)
  monkeypatch.setenv(logs.LOG_DIR_ENV, str(tmp_path / "fallback"))
  assert cli.main(["vocab", "--data_dir", str(tmp_path / "missing")]) == 0
  assert not (tmp_path / "missing").exists()
  assert os.path.dirname(seen[-1]) == str(tmp_path / "fallback")
  (tmp_path / "data").mkdir()
  assert cli.main(["vocab", "--data_dir", str(tmp_path / "data")]) == 0
  assert os.path.dirname(seen[-1]) == str(tmp_path / "data" / "logs")
  assert logs.current_log() is None
