"""`kard data`: summary (as a real subprocess), prepare, errors, and the synthetic hook."""

import collections
import json
import re
import subprocess
import sys
import types

import pytest

from kard_jax.data import splits
from kard_jax.data.example import read_examples
from kard_jax.data.rationale import read_rationales
from kard_jax.cli import main as cli

from tests.conftest import REPO_ROOT

RATIONALES = "rationales/strategyqa_mentorkd_gpt-3.5-turbo-instruct_train.normalized.jsonl"


def _kard(*args):
  return subprocess.run([sys.executable, "-m", "kard_jax", *map(str, args)], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=60)


def test_summary_prints_json_last_line(shared_data):
  path = shared_data / "arc/ARC-Easy-Dev.jsonl"
  proc = _kard("data", "summary", "--benchmark", "arc", "--path", path)
  assert proc.returncode == 0, proc.stderr
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  raw = [json.loads(l) for l in open(path, encoding="utf-8")]
  letter = lambda k: "ABCDE"[int(k) - 1] if k.isdigit() else k
  assert summary == {
      "examples": len(raw),
      "answers": dict(sorted(collections.Counter(letter(r["answerKey"]) for r in raw).items())),
      "choices": {str(k): v for k, v in sorted(collections.Counter(
          len(r["question"]["choices"]) for r in raw).items())}}


def test_summary_strategyqa_in_process(shared_data, capsys):
  path = shared_data / "strategyqa/strategyqa_train.json"
  assert cli.main(["data", "summary", "--benchmark", "strategyqa", "--path", str(path)]) == 0
  raw = json.load(open(path, encoding="utf-8"))
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  yes = sum(r["answer"] for r in raw)
  assert summary == {"examples": 2290, "answers": {"A": yes, "B": 2290 - yes},
                     "choices": {"2": 2290}}


@pytest.mark.parametrize("content,line,message", [
    ('{"id": "a", "question": {"stem": "Q", "choices": [{"text": "x", "label": "A"}, '
     '{"text": "y", "label": "B"}]}, "answerKey": "A"}\n{broken\n', 2, "invalid JSON"),
    ('{"id": "a", "question": {"stem": "Q", "choices": [{"text": "x", "label": "A"}, '
     '{"text": "y", "label": "B"}]}, "answerKey": "C"}\n', 1, "unknown answer label 'C'"),
])
def test_bad_file_is_a_one_line_error(tmp_path, content, line, message):
  path = tmp_path / "bad.jsonl"
  path.write_text(content)
  proc = _kard("data", "summary", "--benchmark", "obqa", "--path", path)
  assert proc.returncode == 2
  assert proc.stderr.startswith(f"error: {path}:{line}: {message}")
  assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_prepare_strategyqa_with_rationales(shared_data, tmp_path, capsys):
  out = tmp_path / "data"
  assert cli.main(["data", "prepare", "--benchmark", "strategyqa", "--source",
                   str(shared_data / "strategyqa"), "--out", str(out), "--rationales",
                   str(shared_data / RATIONALES), "--max_rationales", "2"]) == 0
  root = out / "strategyqa"
  got = {s: read_examples(root / "examples" / f"{s}.jsonl") for s in splits.SPLITS}
  assert got == splits.load_splits("strategyqa", shared_data / "strategyqa")
  rationales = read_rationales(root / "rationales" / "train.jsonl")
  train = {ex.id: ex for ex in got["train"]}
  raw = [json.loads(l) for l in open(shared_data / RATIONALES, encoding="utf-8")]
  words = lambda q: tuple(re.findall(r"\w+", q.lower()))
  id_of = {words(ex.question): ex.id for exs in got.values() for ex in exs}
  with_rationales = {r["qid"] or id_of[words(r["question"])] for r in raw}
  # Each train question that has rationales keeps exactly 2 of its 3; no other question has any.
  counts = collections.Counter(r.id for r in rationales)
  assert set(counts) == with_rationales & set(train)
  assert set(counts.values()) == {2}
  assert all(r.answer == train[r.id].answer and r.sample in (0, 1) for r in rationales)
  assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rationales"] == len(
      rationales)


def test_prepare_explicit_split_files(shared_data, tmp_path):
  obqa = shared_data / "obqa"
  assert cli.main(["data", "prepare", "--benchmark", "obqa", "--out", str(tmp_path),
                   "--source", f"train={obqa / 'dev.jsonl'}",
                   f"test={obqa / 'test.jsonl'}"]) == 0
  got = {s: read_examples(tmp_path / "obqa" / "examples" / f"{s}.jsonl") for s in splits.SPLITS}
  assert [len(got[s]) for s in splits.SPLITS] == [450, 50, 500]  # dev split 90/10 by hash


def test_prepare_missing_files_is_an_input_error(tmp_path, capsys):
  assert cli.main(["data", "prepare", "--benchmark", "arc_easy", "--source", str(tmp_path),
                   "--out", str(tmp_path / "out")]) == 2
  assert f"error: {tmp_path}: no arc_easy train file" in capsys.readouterr().err


def test_synthetic_subcommand_delegates(monkeypatch, capsys):
  calls = []
  fake = types.ModuleType("kard_jax.cli.commands.data_synthetic")
  fake.HELP = "generate the synthetic benchmark"
  fake.add_arguments = lambda p: p.add_argument("--entities", type=int, default=5)
  fake.run = lambda args: calls.append(args.entities) or 0
  monkeypatch.setitem(sys.modules, "kard_jax.cli.commands.data_synthetic", fake)
  assert cli.main(["data", "synthetic", "--entities", "7"]) == 0
  assert calls == [7]


def test_without_synthetic_module_the_rest_works(monkeypatch, shared_data, capsys):
  monkeypatch.setitem(sys.modules, "kard_jax.cli.commands.data_synthetic", None)
  with pytest.raises(SystemExit):
    cli.main(["data", "synthetic"])
  assert "invalid choice: 'synthetic'" in capsys.readouterr().err
  assert cli.main(["data", "summary", "--benchmark", "obqa", "--path",
                   str(shared_data / "obqa/test.jsonl")]) == 0
