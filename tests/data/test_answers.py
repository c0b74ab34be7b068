"""Answer extraction from generated text, and the KARD rationale filter."""

import pytest

from kard_jax.data.answers import answer_statement, filter_rationales, parse_answer
from kard_jax.data.example import Choice, Example
from kard_jax.data.rationale import Rationale

YES_NO = (Choice("A", "yes"), Choice("B", "no"))
CITIES = (Choice("A", "London"), Choice("B", "Paris"), Choice("C", "New York"),
          Choice("D", "York"))


@pytest.mark.parametrize("text,label", [
    ("Paris is in France. So, the answer is B", "B"),
    ("So, the answer is B.", "B"),
    ("the answer is (B)", "B"),
    ("the answer is (b)", "B"),
    ("Therefore the answer is: [C]", "C"),
    ("answer: B.", "B"),
    ("Answer: **D**", "D"),
    ("The correct answer is option C, New York.", "C"),
    ("So, the answer is Paris", "B"),
    ("so, the answer is paris.", "B"),
    ("So, the answer is New York!", "C"),  # the longest matching text, not "York"
    ("So, the answer is York.", "D"),
    ("so the answer is b.", "B"),
    ("The answer is A because it rains.", "A"),
    ("the answer is a.", "A"),
    ("First the answer is A. On reflection, the answer is C.", "C"),  # the last statement
    ("So, the answer is C.\nWait, the answer is unclear.", "C"),  # last one that names a choice
    ("The answer is:\n(D)", "D"),
    ("(B)", "B"),
    ("B", "B"),
    ("(B) Paris", "B"),
    ("  paris. ", "B"),
])
def test_parse_answer_multiple_choice(text, label):
  assert parse_answer(text, CITIES) == label


@pytest.mark.parametrize("text", [
    "", "I cannot tell.", "the answer is a city in Europe", "The answer is Berlin.",
    "Because London is big.", "A city in Europe.", "B is a letter.", "Answer is",
    "the answer is (F)",
])
def test_parse_answer_none(text):
  assert parse_answer(text, CITIES) is None


@pytest.mark.parametrize("text,label", [
    ("the answer is (B) no", "B"),
    ("So, the answer is yes.", "A"),
    ("so the answer is No, it cannot.", "B"),
    ("The answer is true.", "A"),
    ("Answer: false", "B"),
    ("Yes", "A"),
    ("no.", "B"),
    ("(A) yes", "A"),
    ("Therefore, the answer is yes, a pear floats.", "A"),
])
def test_parse_answer_yes_no(text, label):
  assert parse_answer(text, YES_NO) == label


@pytest.mark.parametrize("text", [
    "No doubt pears float.", "Yes and no.", "Nothing is certain.", "the answer is not clear"])
def test_parse_answer_yes_no_needs_a_statement_or_a_bare_answer(text):
  assert parse_answer(text, YES_NO) is None


def test_true_false_are_yes_no_only_for_yes_no_questions():
  choices = (Choice("A", "true love"), Choice("B", "false hope"))
  assert parse_answer("the answer is true", choices) is None
  assert parse_answer("the answer is true love", choices) == "A"


def test_answer_statement_round_trips():
  for choices in (YES_NO, CITIES):
    for c in choices:
      statement = answer_statement(c)
      assert statement.startswith("So, the answer is (")
      assert parse_answer("Some reasoning. " + statement, choices) == c.label
  assert answer_statement(Choice("B", "a fish.")) == "So, the answer is (B) a fish."


def _r(example_id, sample, answer, text="..."):
  return Rationale(example_id, sample, text, answer, "teacher")


def test_filter_rationales_keeps_gold_matches_lowest_samples_first():
  examples = {"q1": Example("q1", "Q1?", YES_NO, "A"), "q2": Example("q2", "Q2?", CITIES, "C")}
  rationales = [
      _r("q1", 3, "A"), _r("q1", 0, "B"), _r("q1", 2, "A"), _r("q1", 1, "A"),
      _r("q2", 1, None, "Hmm. So, the answer is New York."), _r("q2", 0, None, "no idea"),
      _r("other", 0, "A"),
  ]
  kept = filter_rationales(rationales, examples, max_per_example=2)
  assert [(r.id, r.sample) for r in kept] == [("q1", 1), ("q1", 2), ("q2", 1)]
  assert kept[2].answer == "C"  # parsed and filled in
  every = filter_rationales(rationales, examples)
  assert [(r.id, r.sample) for r in every] == [("q1", 1), ("q1", 2), ("q1", 3), ("q2", 1)]
  assert filter_rationales(rationales, examples, max_per_example=0) == []
  with pytest.raises(ValueError):
    filter_rationales(rationales, examples, max_per_example=-1)
