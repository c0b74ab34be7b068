import json

import pytest

from kard_jax.data import example as example_lib
from kard_jax.data.errors import InputError
from kard_jax.data.example import Choice, Example


def _ex(**kw):
  base = dict(id="q1", question="Where?", choices=(Choice("A", "here"), Choice("B", "there")),
              answer="B", extra={"facts": ["f"]})
  base.update(kw)
  return Example(**base)


def test_round_trip(tmp_path):
  p = tmp_path / "ex.jsonl"
  exs = [_ex(), _ex(id="q2", answer="A")]
  example_lib.write_examples(p, exs)
  assert example_lib.read_examples(p) == exs
  assert exs[0].answer_text == "there" and exs[0].labels == ("A", "B")


@pytest.mark.parametrize("obj,fragment", [
    ({"id": "q", "question": "Q", "choices": [{"label": "A", "text": "x"}]}, "missing field 'answer'"),
    ({"id": "q", "question": "Q", "choices": [{"label": "A", "text": "x"}, {"label": "B", "text": "y"}],
      "answer": "C"}, "unknown answer label 'C'"),
    ({"id": "q", "question": "Q", "choices": [{"label": "A", "text": "x"}, {"label": "B", "text": " "}],
      "answer": "A"}, "empty choice 'B'"),
    ({"id": "q", "question": " ", "choices": [{"label": "A", "text": "x"}, {"label": "B", "text": "y"}],
      "answer": "A"}, "empty question"),
])
def test_bad_examples_name_line_and_problem(tmp_path, obj, fragment):
  p = tmp_path / "ex.jsonl"
  good = _ex(id="ok").to_json()
  p.write_text(json.dumps(good) + "\n" + json.dumps(obj) + "\n")
  with pytest.raises(InputError) as e:
    example_lib.read_examples(p)
  assert e.value.line == 2 and fragment in str(e.value)


def test_duplicate_id_points_at_first_line(tmp_path):
  p = tmp_path / "ex.jsonl"
  p.write_text("\n".join(json.dumps(_ex().to_json()) for _ in range(2)) + "\n")
  with pytest.raises(InputError, match=r"duplicate id 'q1' \(first on line 1\)") as e:
    example_lib.read_examples(p)
  assert e.value.line == 2
