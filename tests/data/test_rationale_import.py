"""Importing the real StrategyQA teacher rationales, and bad rationale files."""

import collections
import json
import re

import pytest

from kard_jax.data import benchmarks
from kard_jax.data.answers import parse_answer
from kard_jax.data.errors import InputError
from kard_jax.data.rationale import read_rationales, write_rationales
from kard_jax.data.rationale_import import import_rationales

RATIONALES = "rationales/strategyqa_mentorkd_gpt-3.5-turbo-instruct_train.normalized.jsonl"


@pytest.fixture(scope="module")
def strategyqa(shared_data):
  return benchmarks.load_benchmark("strategyqa", shared_data / "strategyqa/strategyqa_train.json")


def test_import_real_strategyqa_rationales(shared_data, strategyqa, tmp_path):
  path = shared_data / RATIONALES
  raw = [json.loads(l) for l in open(path, encoding="utf-8")]
  rationales = import_rationales(path, strategyqa)
  assert len(rationales) == len(raw) == 4488
  assert len({r.id for r in rationales}) == 1496
  by_id = {ex.id: ex for ex in strategyqa}
  for r, line in zip(rationales, raw):
    example = by_id[r.id]
    if line["qid"] is not None:
      assert r.id == line["qid"]
    else:  # matched by question text
      words = lambda s: re.findall(r"\w+", s.lower())
      assert words(example.question) == words(line["question"])
    assert r.answer == example.answer == ("A" if line["teacher_answer"] == "Yes" else "B")
    assert r.rationale.startswith(line["rationale"].strip())
    assert parse_answer(r.rationale, example.choices) == r.answer
    assert r.teacher == "gpt-3.5-turbo-instruct"
  assert collections.Counter(collections.Counter(r.id for r in rationales).values()) == {3: 1496}
  assert sorted({r.sample for r in rationales}) == [0, 1, 2]
  # The import writes and reads back through the one rationale format.
  write_rationales(tmp_path / "train.jsonl", rationales)
  assert read_rationales(tmp_path / "train.jsonl") == rationales


def _line(**fields):
  row = {"qid": "q1", "question": "Is q1 true?", "gold_answer": True,
         "teacher_model": "t", "rationale": "Because it is.", "teacher_answer": "Yes"}
  row.update(fields)
  return row


@pytest.fixture()
def small():
  return [
      benchmarks.strategyqa_example({"qid": q, "question": f"Is {q} true?", "answer": a}, "x", 1)
      for q, a in (("q1", True), ("q2", False))]


def test_import_appends_statement_only_when_missing(tmp_path, small):
  path = tmp_path / "r.jsonl"
  rows = [_line(), _line(rationale="Clearly. So, the answer is yes."),
          _line(qid=None, question="is Q2 TRUE", gold_answer=None, teacher_answer="No"),
          _line(qid="unknown", question="Is q2 true?", gold_answer=False, teacher_answer="No")]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  got = import_rationales(path, small, sampling={"temperature": 0.7})
  assert [(r.id, r.sample, r.answer) for r in got] == [
      ("q1", 0, "A"), ("q1", 1, "A"), ("q2", 0, "B"), ("q2", 1, "B")]
  assert got[0].rationale == "Because it is.\n\nSo, the answer is (A) yes."
  assert got[1].rationale == "Clearly. So, the answer is yes."
  assert got[0].sampling == {"temperature": 0.7}
  plain = import_rationales(path, small, append_answer=False)
  assert plain[0].rationale == "Because it is." and plain[0].answer == "A"


@pytest.mark.parametrize("row,message", [
    ("{oops\n", r"invalid JSON"),
    (_line(rationale=None), r"missing field 'rationale'"),
    (_line(qid=None, question="Is q3 true?"), r"matches no example"),
    (_line(gold_answer=False), r"gold_answer False disagrees with example 'q1'"),
    (_line(question="Is q2 true?"), r"question differs from example 'q1'"),
    (_line(rationale="   "), r"empty rationale"),
    (_line(teacher_answer="Maybe"), r"cannot read an answer"),
])
def test_bad_rationale_lines(tmp_path, small, row, message):
  path = tmp_path / "r.jsonl"
  path.write_text(json.dumps(_line()) + "\n" + (row if isinstance(row, str) else json.dumps(row)
                                                 + "\n"))
  with pytest.raises(InputError, match=message) as info:
    import_rationales(path, small)
  assert info.value.line == 2 and info.value.path == str(path)


def test_ambiguous_question_is_an_error(tmp_path):
  twins = [benchmarks.strategyqa_example({"qid": q, "question": "Same?", "answer": True}, "x", 1)
           for q in ("a", "b")]
  path = tmp_path / "r.jsonl"
  path.write_text(json.dumps(_line(qid=None, question="same")) + "\n")
  with pytest.raises(InputError, match="matches several examples"):
    import_rationales(path, twins)
