"""`kard teach`: a SIGKILLed run resumes without losing or repeating calls; offline and import."""

import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from kard_jax.data import synthetic
from kard_jax.data.example import write_examples
from kard_jax.data.rationale import read_rationales
from kard_jax.cli import main as cli
from tests.teacher.fake_openai import FakeOpenAI, make_examples

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _journal_lines(path) -> list[dict]:
  """Complete, parseable lines only: what a restart will find."""
  if not os.path.exists(path):
    return []
  out = []
  with open(path, "rb") as f:
    for raw in f.read().split(b"\n")[:-1]:
      try:
        out.append(json.loads(raw))
      except json.JSONDecodeError:
        pass
  return [e for e in out if "failure" not in e]


def _teach_args(data_dir, server, *extra):
  return ["teach", "--data_dir", str(data_dir), "--benchmark", "obqa", "--base_url",
          server.base_url, "--model", "fake-teacher", "--n", "4", "--samples_per_request", "2",
          "--seed", "0", "--max_in_flight", "4", "--timeout", "0.2", "--max_backoff", "0.05",
          "--max_retry_after", "0.1", "--no_progress", *extra]


def test_sigkill_then_restart_loses_nothing_and_pays_nothing_twice(tmp_path):
  examples = make_examples(20)
  n, total = 4, 4 * 20
  for name in ("killed", "reference"):
    write_examples(tmp_path / name / "examples" / "train.jsonl", examples)
  data = tmp_path / "killed"
  journal = data / "rationales" / "journal.jsonl"
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  with FakeOpenAI(examples, hang_s=0.3, delay_s=0.03) as server:
    command = [sys.executable, "-m", "kard_jax", *_teach_args(data, server)]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(_journal_lines(journal)) < total // 4:
      assert proc.poll() is None, proc.communicate()
      assert time.monotonic() < deadline, "the teacher made no progress"
      time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    before = {(e["id"], e["sample"]) for e in _journal_lines(journal)}
    assert 0 < len(before) < total
    requests_before = len(server.log)

    restarted = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                               timeout=120)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    summary = json.loads(restarted.stdout.strip().splitlines()[-1])
    assert summary["samples_cached"] == len(before)
    assert summary["samples_new"] == total - len(before)
    # Nothing recorded before the kill was asked for again.
    asked_again = {(i, s) for i, samples in server.log[requests_before:] for s in samples}
    assert not asked_again & before
    # Every sample is in the journal exactly once.
    keys = collections.Counter((e["id"], e["sample"]) for e in _journal_lines(journal))
    assert set(keys.values()) == {1}
    assert set(keys) == {(ex.id, s) for ex in examples for s in range(n)}

    # An uninterrupted run writes the same file.
    assert cli.main(_teach_args(tmp_path / "reference", server)) == 0
  got = (data / "rationales" / "train.jsonl").read_bytes()
  assert got == (tmp_path / "reference" / "rationales" / "train.jsonl").read_bytes()
  assert {r.id for r in read_rationales(data / "rationales" / "train.jsonl")} == {
      ex.id for ex in examples}


def test_ctrl_c_stops_promptly_and_keeps_finished_calls(tmp_path):
  examples = make_examples(40)
  write_examples(tmp_path / "toy" / "examples" / "train.jsonl", examples)
  journal = tmp_path / "toy" / "rationales" / "journal.jsonl"
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  with FakeOpenAI(examples, faults=False, delay_s=0.1) as server:
    args = _teach_args(tmp_path / "toy", server, "--timeout", "5")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kard_jax", *args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_journal_lines(journal)) < 4:
      assert proc.poll() is None and time.monotonic() < deadline
      time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
  assert proc.returncode == 130 and "interrupted" in err
  lines = _journal_lines(journal)
  assert 4 <= len(lines) < 4 * 40
  assert len({(e["id"], e["sample"]) for e in lines}) == len(lines)


def test_missing_endpoint_flags_are_a_clear_exit(tmp_path):
  write_examples(tmp_path / "obqa" / "examples" / "train.jsonl", make_examples(2))
  proc = subprocess.run([sys.executable, "-m", "kard_jax", "teach", "--data_dir",
                         str(tmp_path / "obqa")], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
  assert proc.returncode != 0
  assert "--base_url and --model are required" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_offline_teacher_writes_the_oracle_rationales(tmp_path, capsys):
  config = synthetic.SyntheticConfig(num_entities=24, num_cities=6, num_countries=4,
                                     num_continents=4, num_validation=4, num_test=4)
  synthetic.write_benchmark(config, tmp_path / "synthetic")
  out = tmp_path / "oracle.jsonl"
  assert cli.main(["teach", "--data_dir", str(tmp_path / "synthetic"), "--offline", "--out",
                   str(out), "--max_per_example", "2"]) == 0
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  written = read_rationales(tmp_path / "synthetic" / "rationales" / "train.jsonl")
  expected = [r for r in written if r.sample < 2]
  assert read_rationales(out) == expected
  assert summary["kept"] == len(expected) and summary["wrong_answer"] == 0


def test_import_maps_foreign_fields(tmp_path, capsys):
  examples = make_examples(3)
  write_examples(tmp_path / "obqa" / "examples" / "train.jsonl", examples)
  rows = [{"meta": {"qid": "q000"}, "cot": "Markers q0 are red.", "pred": "red", "by": "llm-x"},
          {"meta": {"qid": "q001"}, "cot": "It is (A) red, I think.", "pred": "A", "by": "llm-x"},
          {"meta": {"qid": "q001"}, "cot": "Blue it is.", "pred": "B", "by": "llm-y"},
          {"meta": {"qid": "elsewhere"}, "cot": "Not ours.", "pred": "A", "by": "llm-x"}]
  source = tmp_path / "foreign.jsonl"
  source.write_text("".join(json.dumps(r) + "\n" for r in rows))
  assert cli.main(["teach", "--data_dir", str(tmp_path / "obqa"), "--import_file", str(source),
                   "--id_field", "meta.qid", "--rationale_field", "cot", "--answer_field", "pred",
                   "--teacher_field", "by"]) == 0
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  kept = read_rationales(tmp_path / "obqa" / "rationales" / "train.jsonl")
  assert [(r.id, r.sample, r.answer, r.teacher) for r in kept] == [
      ("q000", 0, "A", "llm-x"), ("q001", 1, "B", "llm-y")]
  assert kept[0].rationale.endswith("So, the answer is (A) red.")
  assert summary["unknown_id"] == 1 and summary["wrong_answer"] == 1


def _closed_port_url() -> str:
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/v1"


def _endpoint_args(data_dir, base_url, *extra):
  """Default retry settings: a permanent error taken for a temporary one would retry for minutes."""
  return ["teach", "--data_dir", str(data_dir), "--benchmark", "obqa", "--base_url", base_url,
          "--model", "fake-teacher", "--n", "2", "--no_progress", *extra]


def test_wrong_url_and_html_page_end_fast_with_one_line_cause(tmp_path, capsys):
  examples = make_examples(16)
  write_examples(tmp_path / "obqa" / "examples" / "train.jsonl", examples)
  with FakeOpenAI(examples, always="html") as html:
    for url, cause in ((_closed_port_url(), "connection refused"), (html.base_url, "not JSON")):
      started = time.monotonic()
      assert cli.main(_endpoint_args(tmp_path / "obqa", url)) == 1
      assert time.monotonic() - started < 10.0
      captured = capsys.readouterr()
      lines = captured.err.splitlines()
      assert len(lines) == 1, captured.err
      assert lines[0].startswith("error: ") and cause in lines[0] and url in lines[0]
      assert "rerun" not in lines[0] and captured.out == ""
  # No call is retried: the run stops at the 3rd permanent error in a row (--max_config_errors),
  # when at most --max_in_flight (8) other requests can already be on their way; retrying each
  # call would have sent 9 attempts per call. (Counting the in-flight ones makes the bound hold
  # on a loaded machine too, where more requests are dispatched before the 3rd answer is read.)
  assert html.requests <= 3 + 8


BAD_FLAGS = [("--n", "0"), ("--max_in_flight", "0"), ("--samples_per_request", "0"),
             ("--rpm", "-5"), ("--timeout", "0"), ("--base_url", "ftp://x/v1"),
             ("--limit", "-1"), ("--limit", "0"), ("--max_per_example", "-1"), ("--n", "two"),
             ("--deadline", "nan"), ("--top_p", "1.5")]


@pytest.mark.parametrize("flag,value", BAD_FLAGS)
def test_bad_flag_values_exit_2_with_one_line(tmp_path, capsys, flag, value):
  write_examples(tmp_path / "obqa" / "examples" / "train.jsonl", make_examples(2))
  args = _endpoint_args(tmp_path / "obqa", "http://127.0.0.1:9/v1", flag, value)
  with pytest.raises(SystemExit) as e:
    cli.main(args)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1, err
  assert err.startswith(f"kard teach: error: argument {flag}: ") and repr(value) in err
  assert not (tmp_path / "obqa" / "rationales").exists()  # refused before anything ran


def test_bad_flag_from_the_real_entry_point_has_no_traceback(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "kard_jax", "teach", "--data_dir",
                         str(tmp_path), "--n", "0"], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
  assert proc.returncode == 2
  assert proc.stderr == ("kard teach: error: argument --n: must be an integer >= 1, got '0' "
                         "(kard teach --help)\n")
