"""The flag layer: declarative validators, one-line usage errors (exit 2) for every command."""

import argparse

import pytest

from kard_jax.cli import flags
from kard_jax.cli import main as cli


@pytest.mark.parametrize("validator,good,bad", [
    (flags.positive_int, {"1": 1, "40": 40}, ["0", "-1", "1.5", "x", ""]),
    (flags.non_negative_int, {"0": 0, "7": 7}, ["-1", "two"]),
    (flags.positive_float, {"0.5": 0.5, "3": 3.0}, ["0", "-5", "nan", "inf", "fast"]),
    (flags.non_negative_float, {"0": 0.0, "2.5": 2.5}, ["-0.1", "-inf"]),
    (flags.probability, {"1": 1.0, "0.9": 0.9}, ["0", "1.01"]),
    (flags.fraction, {"0.1": 0.1}, ["0", "1", "-0.2"]),
    (flags.int_range(2, 4), {"2": 2, "4": 4}, ["1", "5"]),
    (flags.http_url, {"http://localhost:8000/v1": "http://localhost:8000/v1",
                      "https://api.openai.com/v1": "https://api.openai.com/v1"},
     ["ftp://x/v1", "localhost:8000/v1", "http:///v1", "http://host:99999/v1", "x"]),
])
def test_validators_accept_and_refuse(validator, good, bad):
  for text, value in good.items():
    assert validator(text) == value
  for text in bad:
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text).replace("[", r"\[")):
      validator(text)


def test_messages_name_the_rule():
  with pytest.raises(argparse.ArgumentTypeError, match=r"must be an integer >= 1, got '0'"):
    flags.positive_int("0")
  with pytest.raises(argparse.ArgumentTypeError, match=r"must be a number > 0, got '-5'"):
    flags.positive_float("-5")
  with pytest.raises(argparse.ArgumentTypeError, match=r"in \(0, 1\)"):
    flags.fraction("1")


# One bad value per command: the flag layer refuses each before the command runs.
COMMANDS = [
    ["teach", "--data_dir", "d", "--n", "0"],
    ["teach", "--data_dir", "d", "--base_url", "ftp://x/v1"],
    ["eval", "--model_dir", "m", "--task", "t", "--batch_size", "0"],
    ["eval", "--model_dir", "m", "--task", "t", "--top_p", "0"],
    ["retrieval", "build", "--kb", "kb.txt", "--out", "o", "--window", "0"],
    ["retrieval", "retrieve", "--index", "i", "--data_dir", "d", "--query", "question",
     "--k", "-3"],
    ["vocab", "--data_dir", "d", "--vocab_size", "0"],
    ["data", "prepare", "--benchmark", "obqa", "--source", "s", "--out", "o",
     "--holdout_fraction", "1"],
    ["rerank", "apply", "--data", "d", "--index", "i", "--model_dir", "m", "--top_k", "0"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2] + a[-2:]))
def test_every_command_refuses_bad_values_in_one_line(argv, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err, err
  prog = "kard " + " ".join(a for a in argv[:2] if not a.startswith("-"))
  assert err.startswith(f"{prog}: error: argument {argv[-2]}: must be ")
  assert repr(argv[-1]) in err and err.endswith(f"({prog} --help)\n")


def test_argparse_errors_are_one_line_too(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["teach", "--n", "3"])  # --data_dir missing
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err == ("kard teach: error: the following arguments are required: --data_dir "
                 "(kard teach --help)\n")


def test_usage_error_from_run_is_one_line_exit_2(monkeypatch, capsys):
  from kard_jax.cli.commands import vocab

  def run(args):
    raise flags.UsageError("--a and --b\n exclude each other")

  monkeypatch.setattr(vocab, "run", run)
  assert cli.main(["vocab", "--data_dir", "d"]) == 2
  assert capsys.readouterr().err == "kard vocab: error: --a and --b exclude each other\n"
