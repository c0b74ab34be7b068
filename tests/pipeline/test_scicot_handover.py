"""Sci-CoT's hand-over from stage 1 (the rationale model's predictions) to stage 2's input file."""

import pytest

from kard_jax.data.errors import InputError
from kard_jax.pipeline import student_stages as ss


def _line(**overrides):
  line = {"id": "q1", "inputs": "Question: ...", "rationales": ["Paris is in France. So, the "
          "answer is B."], "answers": ["B"], "scores": [-1.0], "votes": {"B": 1},
          "prediction": "B", "gold": "B", "correct": True, "knowledge": None}
  line.update(overrides)
  return line


def test_greedy_hands_over_the_decoded_text_verbatim_and_the_answer_reached():
  text, answer = ss.stage1_rationale(_line(), "p.jsonl", 1)
  assert text == "Paris is in France. So, the answer is B." and answer == "B"
  text, answer = ss.stage1_rationale(_line(rationales=["no answer here"], answers=[None],
                                           prediction=None), "p.jsonl", 1)
  assert text == "no answer here" and answer is None


def test_self_consistency_hands_over_the_rationale_of_the_voted_answer():
  line = _line(rationales=["r0 -> A", "r1 -> C", "r2 -> C"], answers=["A", "C", "C"],
               scores=[-1.0, -2.0, -3.0], prediction="C")
  assert ss.stage1_rationale(line, "p.jsonl", 1) == ("r1 -> C", "C")


@pytest.mark.parametrize("field", ["id", "rationales", "answers", "prediction"])
def test_a_predictions_line_without_a_needed_field_names_file_line_and_field(field):
  line = _line()
  del line[field]
  with pytest.raises(InputError, match=rf"p\.jsonl:7: missing field '{field}'"):
    ss.stage1_rationale(line, "p.jsonl", 7)


def test_malformed_rationales_are_errors():
  with pytest.raises(InputError, match="non-empty list"):
    ss.stage1_rationale(_line(rationales=[]), "p.jsonl", 1)
  with pytest.raises(InputError, match="one answer per rationale"):
    ss.stage1_rationale(_line(answers=["B", "A"]), "p.jsonl", 1)


def test_the_old_field_names_are_not_a_fallback():
  """A line with only what the hand-over once looked for ('outputs', 'answer_parsed') and the
  parsed letter is an error, not a rationale made of the letter."""
  line = {"id": "q1", "outputs": ["text"], "answer_parsed": "B", "prediction": "B"}
  with pytest.raises(InputError, match="missing field 'rationales'"):
    ss.stage1_rationale(line, "predictions.jsonl", 1)
