"""Loaders on the real shared files (counts and answer distributions computed independently) and
on bad input (each error names file, line and problem)."""

import collections
import json

import pytest

from kard_jax.data import benchmarks
from kard_jax.data.errors import InputError
from kard_jax.data.example import Choice, read_examples, write_examples


def _jsonl(path):
  return [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]


def _letter(key):
  """ARC's numeric answer keys as letters, the way a reader would map them by hand."""
  return "ABCDE"[int(key) - 1] if key.isdigit() else key


@pytest.mark.parametrize("name,rel,count", [
    ("obqa", "obqa/train.jsonl", 4957), ("obqa", "obqa/dev.jsonl", 500),
    ("obqa", "obqa/test.jsonl", 500), ("obqa", "obqa/test_complete.jsonl", 500),
    ("arc", "arc/ARC-Easy-Train.jsonl", 2251), ("arc_easy", "arc/ARC-Easy-Dev.jsonl", 570),
    ("arc", "arc/ARC-Easy-Test.jsonl", 2376)])
def test_obqa_and_arc_real_files(shared_data, name, rel, count):
  path = shared_data / rel
  raw = _jsonl(path)
  examples = benchmarks.load_benchmark(name, path)
  assert len(examples) == len(raw) == count
  assert (collections.Counter(ex.answer for ex in examples)
          == collections.Counter(_letter(r["answerKey"]) for r in raw))
  assert (collections.Counter(len(ex.choices) for ex in examples)
          == collections.Counter(len(r["question"]["choices"]) for r in raw))
  assert len({ex.id for ex in examples}) == count
  for ex, r in zip(examples, raw):
    assert ex.question == r["question"]["stem"]
    assert [c.text for c in ex.choices] == [c["text"] for c in r["question"]["choices"]]
    assert ex.labels == tuple("ABCDE"[:len(ex.choices)])
    if "fact1" in r:
      assert ex.extra["fact1"] == r["fact1"]


def test_arc_numeric_labels_are_renumbered_and_kept(shared_data):
  raw = _jsonl(shared_data / "arc/ARC-Easy-Train.jsonl")
  examples = benchmarks.load_benchmark("arc", shared_data / "arc/ARC-Easy-Train.jsonl")
  numeric = [(ex, r) for ex, r in zip(examples, raw) if r["answerKey"].isdigit()]
  assert len(numeric) == 102  # 25 + 22 + 33 + 22 answers "1".."4" in the README's ~3.5%
  for ex, r in numeric:
    assert ex.extra["original_labels"] == [c["label"] for c in r["question"]["choices"]]
    assert ex.extra["original_answer"] == r["answerKey"]
    assert ex.answer_text == r["question"]["choices"][int(r["answerKey"]) - 1]["text"]
  assert all("original_labels" not in ex.extra for ex, r in zip(examples, raw)
             if not r["answerKey"].isdigit())


def test_obqa_dev_null_ids_become_stable_line_ids(shared_data):
  examples = benchmarks.load_benchmark("obqa", shared_data / "obqa/dev.jsonl")
  assert [ex.id for ex in examples[:3]] == ["obqa-dev-1", "obqa-dev-2", "obqa-dev-3"]
  assert examples == benchmarks.load_benchmark("obqa", shared_data / "obqa/dev.jsonl")


def test_strategyqa_real_file(shared_data):
  path = shared_data / "strategyqa/strategyqa_train.json"
  raw = json.load(open(path, encoding="utf-8"))
  examples = benchmarks.load_benchmark("strategyqa", path)
  assert len(examples) == len(raw) == 2290
  assert [ex.id for ex in examples] == [r["qid"] for r in raw]
  assert collections.Counter(ex.answer for ex in examples) == {
      "A": sum(r["answer"] for r in raw), "B": sum(not r["answer"] for r in raw)}
  assert all(ex.choices == (Choice("A", "yes"), Choice("B", "no")) for ex in examples)
  for key in ("facts", "decomposition", "evidence", "term"):
    assert examples[7].extra[key] == raw[7][key]
  assert {line for line, _ in benchmarks.iter_json_array(path)} == {1}  # one-line file


def test_json_array_lines_are_where_items_start(shared_data):
  path = shared_data / "strategyqa/strategyqa_test.json"
  lines = open(path, encoding="utf-8").read().split("\n")
  items = list(benchmarks.iter_json_array(path))
  assert len(items) == len(json.load(open(path, encoding="utf-8"))) == 490
  for line, item in items:
    assert lines[line - 1].strip() == "{"
    assert item["qid"] in lines[line]


def test_strategyqa_unlabelled_test_set_is_refused(shared_data):
  with pytest.raises(InputError,
                     match=r"strategyqa_test\.json:2: missing field 'answer'.*no labels"):
    benchmarks.load_benchmark("strategyqa", shared_data / "strategyqa/strategyqa_test.json")


def _medqa_row(i, answer_idx="C", **overrides):
  row = {"question": f"A {30 + i}-year-old presents with fever. Which drug?", "answer": "Drug C",
         "options": {"A": "Drug A", "B": "Drug B", "C": "Drug C", "D": "Drug D"},
         "meta_info": "step1", "answer_idx": answer_idx}
  row["answer"] = row["options"].get(answer_idx, "?")
  row.update(overrides)
  return row


def test_medqa_written_in_official_schema(tmp_path):
  rows = [_medqa_row(i, "ABCD"[i % 4]) for i in range(10)]
  rows[3]["metamap_phrases"] = ["fever"]
  path = tmp_path / "phrases_no_exclude_dev.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  examples = benchmarks.load_benchmark("medqa", path)
  assert [ex.id for ex in examples] == [f"medqa-dev-{i + 1}" for i in range(10)]
  assert collections.Counter(ex.answer for ex in examples) == collections.Counter(
      r["answer_idx"] for r in rows)
  assert all(ex.answer_text == r["answer"] for ex, r in zip(examples, rows))
  assert examples[0].extra == {"meta_info": "step1"}
  assert examples[3].extra["metamap_phrases"] == ["fever"]
  # The normalised form round-trips through the examples file.
  write_examples(tmp_path / "out.jsonl", examples)
  assert read_examples(tmp_path / "out.jsonl") == examples


def _obqa_row(i, key="A", labels="ABCD", **overrides):
  row = {"id": f"q{i}", "question": {"stem": f"Question {i}?", "choices": [
      {"text": f"choice {l}", "label": l} for l in labels]}, "answerKey": key}
  row.update(overrides)
  return row


def _write_lines(path, rows):
  path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
  return path


def _empty_choice():
  row = _obqa_row(2)
  row["question"]["choices"][1]["text"] = "  "
  return row


@pytest.mark.parametrize("name,rows,message", [
    ("obqa", [_obqa_row(1), "{not json\n"], r"invalid JSON"),
    ("obqa", [_obqa_row(1), {"id": "q2", "answerKey": "A"}], r"missing field 'question'"),
    ("arc", [_obqa_row(1), _obqa_row(2, question={"choices": []})],
     r"missing field 'question\.stem'"),
    ("arc", [_obqa_row(1), _obqa_row(2, key="E")], r"unknown answer label 'E'"),
    ("arc", [_obqa_row(1), _obqa_row(2, labels="1234", key="D")], r"unknown answer label 'D'"),
    ("obqa", [_obqa_row(1), _obqa_row(1)], r"duplicate id 'q1' \(first on line 1\)"),
    ("obqa", [_obqa_row(1), _empty_choice()], r"empty choice 'B'"),
    ("medqa", [_medqa_row(1), _medqa_row(2, answer_idx="F")], r"unknown answer label 'F'"),
    ("medqa", [_medqa_row(1), {"question": "Q?", "options": {"A": "x", "B": "y"}}],
     r"missing field 'answer_idx'"),
    ("medqa", [_medqa_row(1), _medqa_row(2, options={"A": "x", "B": ""}, answer_idx="A")],
     r"empty choice 'B'"),
    ("medqa", [_medqa_row(1), "[1, 2\n"], r"invalid JSON"),
])
def test_bad_jsonl_input_names_file_line_and_problem(tmp_path, name, rows, message):
  path = _write_lines(tmp_path / "bad.jsonl", rows)
  with pytest.raises(InputError, match=message) as info:
    benchmarks.load_benchmark(name, path)
  assert info.value.path == str(path)
  assert info.value.line == 2


def _sqa(qid, answer=True, **overrides):
  return {"qid": qid, "question": f"Is {qid} true?", "answer": answer, "facts": ["f"],
          **overrides}


@pytest.mark.parametrize("items,message,line", [
    ([_sqa("a"), _sqa("a")], r"duplicate id 'a' \(first on line 2\)", 3),
    ([_sqa("a"), {"qid": "b", "answer": False}], r"missing field 'question'", 3),
    ([_sqa("a"), _sqa("b", answer="maybe")], r"unknown answer 'maybe'", 3),
    ([_sqa("a"), _sqa("b", question="  ")], r"empty question", 3),
])
def test_bad_strategyqa_items_report_their_real_line(tmp_path, items, message, line):
  path = tmp_path / "strategyqa_train.json"
  path.write_text("[\n" + ",\n".join(json.dumps(i) for i in items) + "\n]\n")
  with pytest.raises(InputError, match=message) as info:
    benchmarks.load_benchmark("strategyqa", path)
  assert info.value.line == line


@pytest.mark.parametrize("text,line", [
    ('[\n{"qid": "a",\n "question": "Q?", "answer": true}\n{"qid": "b"}]', 4),  # missing comma
    ('[\n{"qid": "a", "question": "Q?", "answer": tru}\n]', 2),
    ('{"qid": "a"}', 1),
    ('[{"qid": "a", "question": "Q?", "answer": true}]\n\n]', 3),
])
def test_strategyqa_invalid_json_line(tmp_path, text, line):
  path = tmp_path / "s.json"
  path.write_text(text)
  with pytest.raises(InputError, match="invalid JSON") as info:
    benchmarks.load_benchmark("strategyqa", path)
  assert info.value.line == line


def test_missing_file_and_unknown_benchmark(tmp_path):
  with pytest.raises(InputError, match="file not found"):
    benchmarks.load_benchmark("strategyqa", tmp_path / "nope.json")
  with pytest.raises(ValueError, match="unknown benchmark"):
    benchmarks.load_benchmark("squad", tmp_path / "x.jsonl")
