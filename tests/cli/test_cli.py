import subprocess
import sys

import pytest

from kard_jax.cli import flags
from kard_jax.cli import main as cli


def test_split_gin_bindings():
  rest, bindings = flags.split_gin_bindings(
      ["train", "--gin_file=a.gin", "--gin.train.num_steps=5", "--gin.MODEL_DIR='/x'"])
  assert rest == ["train", "--gin_file=a.gin"]
  assert bindings == ["train.num_steps = 5", "MODEL_DIR = '/x'"]


def test_malformed_gin_binding_is_a_clear_exit():
  with pytest.raises(SystemExit, match="--gin.KEY=VALUE"):
    flags.split_gin_bindings(["--gin.oops"])


def test_help_lists_every_command(capsys):
  assert cli.main(["--help"]) == 0
  out = capsys.readouterr().out
  for name in cli.COMMANDS:
    assert name in out


def test_unknown_command_exits_2(capsys):
  assert cli.main(["frobnicate"]) == 2
  assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_has_help():
  """Each registered subcommand imports and prints a --help (no heavy work at import)."""
  for name in cli.COMMANDS:
    proc = subprocess.run([sys.executable, "-m", "kard_jax", name, "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (name, proc.stderr[-2000:])
    assert f"kard {name}" in proc.stdout


def test_parse_gin_starts_from_a_clean_config(tmp_path):
  """Bindings left by an earlier command in the process must not leak into the next one."""
  import argparse

  import gin

  gin_file = tmp_path / "a.gin"
  gin_file.write_text("from __gin__ import dynamic_registration\n"
                      "from kard_jax.training import optimizers\n"
                      "optimizers.adamw.b1 = 0.5\n")
  try:
    gin.parse_config("from __gin__ import dynamic_registration\n"  # an earlier command's leftover
                     "from kard_jax.training import optimizers\n"
                     "optimizers.adamw.weight_decay = 0.25\n")
    flags.parse_gin(argparse.Namespace(gin_file=[str(gin_file)], gin_bindings=[]))
    bound = gin.config_str()
    assert "b1 = 0.5" in bound and "weight_decay" not in bound
  finally:
    gin.clear_config()


def test_a_missing_gin_file_is_a_clear_error_exit_2(capsys):
  assert cli.main(["train", "--gin_file=no/such.gin", "--model_dir=/tmp/unused"]) == 2
  assert "no/such.gin: gin file not found" in capsys.readouterr().err
