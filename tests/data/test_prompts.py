"""Prompt templates: exact formats, one-line text, answer removal, and parseable targets."""

import pytest

from kard_jax.data import prompts
from kard_jax.data.answers import parse_answer
from kard_jax.data.example import Choice, Example

EX = Example("q1", "Where was  Tovarin\nKessel born?",
             (Choice("A", "Mirabel"), Choice("B", "Dorn"), Choice("C", "Qorvia"),
              Choice("D", "Vell")), "C")
RATIONALE = "Tovarin Kessel was born in Qorvia.\nSo, the answer is C."
QUESTION = ("Question: Where was Tovarin Kessel born? Answer Choices: (A) Mirabel (B) Dorn "
            "(C) Qorvia (D) Vell")


def test_exact_formats():
  q, c = EX.question, EX.choices
  assert prompts.answer_only_inputs(q, c) == QUESTION + " Answer:"
  assert prompts.reasoning_inputs(q, c) == QUESTION + " Explanation:"
  assert prompts.scicot_rationale_inputs(q, c) == QUESTION + " Explanation:"
  assert prompts.kard_inputs(q, c, ["P one.", "", "P\ttwo."]) == (
      QUESTION + " Knowledge: P one. P two. Explanation:")
  assert prompts.scicot_answer_inputs(q, c, RATIONALE) == (
      QUESTION + " Explanation: Tovarin Kessel was born in Qorvia. Answer:")
  assert prompts.multitask_rationale_inputs(q, c) == "[rationale] " + QUESTION + " Explanation:"
  assert prompts.multitask_answer_inputs(q, c) == "[answer] " + QUESTION + " Answer:"
  assert prompts.answer_target("C") == "The answer is C."


@pytest.mark.parametrize("method", prompts.METHODS)
def test_every_method_renders_one_clean_line(method):
  text = prompts.render_inputs(method, EX, passages=["A\npassage  here."], rationale=RATIONALE)
  assert "\n" not in text and "\t" not in text and "  " not in text
  assert text == text.strip() and QUESTION in text
  target = prompts.render_target(method, EX, RATIONALE)
  assert "\n" not in target
  # Every target, teacher-written or not, parses back to the gold label.
  assert parse_answer(target, EX.choices) == "C"
  assert parse_answer(prompts.render_target(method, EX), EX.choices) == "C"


def test_rationale_methods_target_the_rationale_and_answer_methods_the_answer():
  for method in prompts.RATIONALE_METHODS:
    assert prompts.render_target(method, EX, RATIONALE) == (
        "Tovarin Kessel was born in Qorvia. So, the answer is C.")
  for method in prompts.ANSWER_METHODS:
    assert prompts.render_target(method, EX, RATIONALE) == "The answer is C."


@pytest.mark.parametrize("rationale, stripped", [
    ("A is B. So, the answer is C.", "A is B."),
    ("A is B. so the answer is (C) Qorvia", "A is B."),
    ("A is B. Thus, the answer would be yes.", "A is B."),
    ("The answer is C.", ""),
    ("No closing statement here.", "No closing statement here."),
    ("The answer is hard to see. B is C. Therefore the answer is C.",
     "The answer is hard to see. B is C."),
])
def test_strip_answer(rationale, stripped):
  assert prompts.strip_answer(rationale) == stripped


def test_scicot_answer_inputs_hide_the_rationales_answer():
  text = prompts.render_inputs("scicot_answer", EX, rationale=RATIONALE)
  assert "answer is" not in text.lower()
  with pytest.raises(ValueError):
    prompts.render_inputs("scicot_answer", EX)


def test_text_is_normalised_as_sentencepiece_normalises_it():
  assert prompts.clean("  \uff21\ufb01ne\u00a0day\n") == "Afine day"  # full-width A, fi ligature
  ex = Example("q", "\uff31?", (Choice("A", "x\u2002y"), Choice("B", "z")), "A")
  assert prompts.answer_only_inputs(ex.question, ex.choices) == (
      "Question: Q? Answer Choices: (A) x y (B) z Answer:")


def test_unknown_method():
  with pytest.raises(ValueError, match="unknown method"):
    prompts.render_inputs("kard_bm25", EX)
  with pytest.raises(ValueError, match="unknown method"):
    prompts.render_target("nope", EX)


def test_fit_inputs_shortens_the_context_never_the_question_choices_or_cue():
  from kard_jax.data.example import Choice, Example

  ex = Example("q1", "Where does Ada live?", (Choice("A", "Oslo"), Choice("B", "Rome")), "A")
  words = lambda text: len(text.split())  # a stand-in tokenizer: one token per word
  head = prompts.question_block(ex.question, ex.choices)
  passages = ["one two three four", "five six seven"]
  full = prompts.fit_inputs("kard", ex, passages=passages, count_tokens=words, max_tokens=100)
  assert full == prompts.kard_inputs(ex.question, ex.choices, passages)
  budget = words(head) + 1 + 5 + 1 + 1  # "Knowledge:" + 5 passage words + cue + EOS
  fitted = prompts.fit_inputs("kard", ex, passages=passages, count_tokens=words,
                              max_tokens=budget)
  assert fitted == f"{head} Knowledge: one two three four five Explanation:"
  rationale = "Ada lives in Oslo because her school is there. So, the answer is A."
  fitted = prompts.fit_inputs("scicot_answer", ex, rationale=rationale, count_tokens=words,
                              max_tokens=words(head) + 1 + 3 + 1 + 1)
  assert fitted == f"{head} Explanation: Ada lives in Answer:"
  with pytest.raises(prompts.InputTooLong, match="example 'q1'"):
    prompts.fit_inputs("answer_only", ex, count_tokens=words, max_tokens=words(head))
  with pytest.raises(prompts.InputTooLong, match="without any passage"):
    prompts.fit_inputs("kard", ex, passages=passages, count_tokens=words, max_tokens=words(head))
