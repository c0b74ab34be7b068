"""The synthetic benchmark's oracle teacher and the rationale importer."""

import json

import pytest

from kard_jax.data import synthetic
from kard_jax.data.errors import InputError
from kard_jax.data.example import read_examples, write_examples
from kard_jax.data.rationale import read_rationales
from kard_jax.teacher import offline
from tests.teacher.fake_openai import make_examples

SMALL = synthetic.SyntheticConfig(num_entities=24, num_cities=6, num_countries=4,
                                  num_continents=4, num_validation=4, num_test=4)


def test_oracle_matches_the_generator(tmp_path):
  synthetic.write_benchmark(SMALL, tmp_path)
  examples, rationales = offline.synthetic_oracle(tmp_path)
  assert examples == read_examples(tmp_path / "examples" / "train.jsonl")
  assert rationales == read_rationales(tmp_path / "rationales" / "train.jsonl")
  assert {r.teacher for r in rationales} == {synthetic.TEACHER}


def test_oracle_refuses_examples_from_another_world(tmp_path):
  synthetic.write_benchmark(SMALL, tmp_path)
  examples = read_examples(tmp_path / "examples" / "train.jsonl")
  write_examples(tmp_path / "examples" / "train.jsonl", examples[1:])
  with pytest.raises(InputError, match="not what the generator makes"):
    offline.synthetic_oracle(tmp_path)
  (tmp_path / "manifest.json").write_text(json.dumps({"benchmark": "obqa", "config": {}}))
  with pytest.raises(InputError, match="not a synthetic benchmark"):
    offline.synthetic_oracle(tmp_path)


def write_rows(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def test_import_reads_answers_from_text_or_field(tmp_path):
  examples = make_examples(2)  # q000 gold A "red", q001 gold B "blue"
  path = write_rows(tmp_path / "r.jsonl", [
      {"qid": "q000", "text": "Red, clearly. So, the answer is (A) red.", "ans": "B"},
      {"qid": "q000", "text": "Markers are red.", "ans": "red"},
      {"qid": "q001", "text": "Hard to say.", "ans": True},  # names no choice: no answer
      {"qid": "q999", "text": "Unknown.", "ans": "A"},
  ])
  fields = offline.Fields(id="qid", rationale="text", answer="ans")
  rationales, counts = offline.import_file(path, examples, fields, teacher="t0")
  assert [(r.id, r.sample, r.answer) for r in rationales] == [
      ("q000", 0, "A"), ("q000", 1, "A"), ("q001", 0, None)]
  assert rationales[1].rationale == "Markers are red.\n\nSo, the answer is (A) red."
  assert counts == {"lines": 4, "unknown_id": 1, "answer_appended": 1}
  assert {r.teacher for r in rationales} == {"t0"}
  with pytest.raises(InputError, match="q999") as e:
    offline.import_file(path, examples, fields, skip_unknown=False)
  assert e.value.line == 4


def test_import_sample_field_and_errors(tmp_path):
  examples = make_examples(1)
  fields = offline.Fields(sample="k")
  path = write_rows(tmp_path / "r.jsonl", [{"id": "q000", "rationale": "a", "k": 3},
                                           {"id": "q000", "rationale": "b", "k": 3}])
  with pytest.raises(InputError, match="duplicate sample 3") as e:
    offline.import_file(path, examples, fields)
  assert e.value.line == 2
  path = write_rows(tmp_path / "r.jsonl", [{"id": "q000", "rationale": "  "}])
  with pytest.raises(InputError, match="empty field 'rationale'"):
    offline.import_file(path, examples)
  path = write_rows(tmp_path / "r.jsonl", [{"rationale": "x"}])
  with pytest.raises(InputError, match="missing field 'id'"):
    offline.import_file(path, examples)
