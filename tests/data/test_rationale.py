import json

import pytest

from kard_jax.data import rationale as rationale_lib
from kard_jax.data.errors import InputError
from kard_jax.data.rationale import Rationale


def test_round_trip_and_grouping(tmp_path):
  rs = [Rationale("q1", 1, "b. So, the answer is B.", "B", "t", {"temperature": 0.7}),
        Rationale("q1", 0, "a. So, the answer is A.", "A", "t"),
        Rationale("q2", 0, "c.", None)]
  p = tmp_path / "r.jsonl"
  rationale_lib.write_rationales(p, rs)
  assert rationale_lib.read_rationales(p) == rs
  groups = rationale_lib.group_by_example(rs)
  assert [r.sample for r in groups["q1"]] == [0, 1] and len(groups["q2"]) == 1


def test_duplicate_sample_and_empty_rationale_are_errors(tmp_path):
  p = tmp_path / "r.jsonl"
  row = {"id": "q1", "sample": 0, "rationale": "x"}
  p.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
  with pytest.raises(InputError, match="duplicate") as e:
    rationale_lib.read_rationales(p)
  assert e.value.line == 2
  p.write_text(json.dumps({"id": "q1", "sample": 0, "rationale": "  "}) + "\n")
  with pytest.raises(InputError, match="empty rationale"):
    rationale_lib.read_rationales(p)
