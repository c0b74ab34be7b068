"""The text every method trains and decodes on: inputs and targets, rendered from an example.

Following KARD's official preprocessing ("Question: ... Knowledge: ... Explanation:"), each input
is one line: the question block, the method's extra context, then a cue the target continues:

  answer_only        Question: Q Answer Choices: (A) a (B) b (C) c (D) d Answer:
  reasoning          Question: Q Answer Choices: (A) a ... Explanation:
  kard               Question: Q Answer Choices: (A) a ... Knowledge: P1 P2 P3 Explanation:
  scicot_rationale   same as reasoning (Sci-CoT stage 1)
  scicot_answer      Question: Q Answer Choices: ... Explanation: R Answer:   (R without its answer)
  multitask_*        "[rationale] " + reasoning input, "[answer] " + answer_only input
                     (distilling step-by-step's task prefixes)

Targets: a rationale ("... So, the answer is C.") for rationale methods, `answer_target(label)`
("The answer is C.") for answer methods; `kard_jax.data.answers.parse_answer` reads either.
Text is NFKC-normalised with whitespace collapsed to single spaces (no newline or tab), as
SentencePiece normalises it, so a vocabulary covering the characters decodes a tokenised prompt
back to exactly this text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, Sequence

from kard_jax.data.example import Choice, Example

RATIONALE_PREFIX = "[rationale] "
ANSWER_PREFIX = "[answer] "

# Methods whose target is a rationale, and those whose target is the answer statement.
RATIONALE_METHODS = ("reasoning", "kard", "scicot_rationale", "multitask_rationale")
ANSWER_METHODS = ("answer_only", "scicot_answer", "multitask_answer")
METHODS = RATIONALE_METHODS + ANSWER_METHODS

# The closing statement of a rationale: "So, the answer is C.", "Thus the answer is (B) no".
_CLOSING = re.compile(
    r"(?:^|(?<=[.!?])|\s)\s*(?:(?:so|thus|therefore|hence),?\s+)?"
    r"the\s+answer\s+(?:is|would\s+be)\b", re.I)


def clean(text: str) -> str:
  """NFKC, as SentencePiece normalises, with all whitespace collapsed to single spaces."""
  return " ".join(unicodedata.normalize("NFKC", str(text)).split())


def format_choices(choices: Sequence[Choice]) -> str:
  return " ".join(f"({c.label}) {clean(c.text)}" for c in choices)


def question_block(question: str, choices: Sequence[Choice]) -> str:
  return f"Question: {clean(question)} Answer Choices: {format_choices(choices)}"


def knowledge_block(passages: Sequence[str]) -> str:
  """Passages, best first, joined by spaces (empty ones dropped)."""
  return "Knowledge: " + " ".join(p for p in (clean(p) for p in passages) if p)


def answer_target(label: str) -> str:
  return f"The answer is {label}."


def answer_phrase(example: Example) -> str:
  """How targets name the answer: its label ("C"), or the choice's text when the example's
  extra["answer_format"] is "text" (a synthetic-benchmark option: a from-scratch student then
  need not learn to map the choice its reasoning reached back to a letter)."""
  if example.extra.get("answer_format", "label") == "text":
    return next(c.text for c in example.choices if c.label == example.answer)
  return example.answer


def strip_answer(rationale: str) -> str:
  """The rationale without its closing answer statement, so a reader must infer the answer."""
  text = clean(rationale)
  matches = list(_CLOSING.finditer(text))
  if not matches:
    return text
  return text[:matches[-1].start()].strip()


def answer_only_inputs(question: str, choices: Sequence[Choice]) -> str:
  return f"{question_block(question, choices)} Answer:"


def reasoning_inputs(question: str, choices: Sequence[Choice]) -> str:
  return f"{question_block(question, choices)} Explanation:"


def kard_inputs(question: str, choices: Sequence[Choice], passages: Sequence[str]) -> str:
  return f"{question_block(question, choices)} {knowledge_block(passages)} Explanation:"


def scicot_rationale_inputs(question: str, choices: Sequence[Choice]) -> str:
  return reasoning_inputs(question, choices)


def scicot_answer_inputs(question: str, choices: Sequence[Choice], rationale: str) -> str:
  return f"{question_block(question, choices)} Explanation: {strip_answer(rationale)} Answer:"


def multitask_rationale_inputs(question: str, choices: Sequence[Choice]) -> str:
  return RATIONALE_PREFIX + reasoning_inputs(question, choices)


def multitask_answer_inputs(question: str, choices: Sequence[Choice]) -> str:
  return ANSWER_PREFIX + answer_only_inputs(question, choices)


def render_inputs(method: str, example: Example, *, passages: Sequence[str] = (),
                  rationale: str | None = None) -> str:
  """The input text of `method` for `example` (passages for kard, a rationale for scicot_answer)."""
  q, c = example.question, example.choices
  if method == "answer_only":
    return answer_only_inputs(q, c)
  if method == "reasoning":
    return reasoning_inputs(q, c)
  if method == "kard":
    return kard_inputs(q, c, passages)
  if method == "scicot_rationale":
    return scicot_rationale_inputs(q, c)
  if method == "scicot_answer":
    if rationale is None:
      raise ValueError("scicot_answer inputs need a rationale")
    return scicot_answer_inputs(q, c, rationale)
  if method == "multitask_rationale":
    return multitask_rationale_inputs(q, c)
  if method == "multitask_answer":
    return multitask_answer_inputs(q, c)
  raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def render_target(method: str, example: Example, rationale: str | None = None) -> str:
  """The target text: the rationale for rationale methods (when given), else the answer."""
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
  if method in RATIONALE_METHODS and rationale is not None:
    return clean(rationale)
  if method in RATIONALE_METHODS:
    return f"So, the answer is {answer_phrase(example)}."
  return answer_target(answer_phrase(example))


class InputTooLong(ValueError):
  """The question, its choices and the cue alone exceed the input length."""


def fit_inputs(method: str, example: Example, *, passages: Sequence[str] = (),
               rationale: str | None = None,
               count_tokens: Callable[[str], int] | None = None,
               max_tokens: int | None = None) -> str:
  """`render_inputs`, made to fit `max_tokens` tokens (EOS included) as `count_tokens` counts.

  Training and evaluation both read inputs made here (the SeqIO tasks of `tasks/` call it), so
  a student is evaluated on exactly the text it was trained on. When the input is too long the
  context is shortened from its end, word by word: KARD's passages (the last passage first),
  Sci-CoT's rationale; never the question, the choices or the cue ("Explanation:", "Answer:").
  Raises InputTooLong when even no context does not fit.
  """
  text = render_inputs(method, example, passages=passages, rationale=rationale)
  if max_tokens is None or count_tokens is None:
    return text
  budget = max_tokens - 1  # SeqIO appends EOS after trimming to the length
  if count_tokens(text) <= budget:
    return text
  q, c = example.question, example.choices
  if method == "kard":
    words = " ".join(clean(p) for p in passages).split()
    render = lambda n: clean(kard_inputs(q, c, [" ".join(words[:n])]))
  elif method == "scicot_answer":
    words = strip_answer(rationale or "").split()
    render = lambda n: clean(f"{question_block(q, c)} Explanation: {' '.join(words[:n])} Answer:")
  else:
    words, render = [], lambda n: text
  lo, hi = -1, len(words)  # render(lo) fits (-1: not known yet), render(hi) does not
  while hi - lo > 1:
    mid = (lo + hi) // 2
    if count_tokens(render(max(mid, 0))) <= budget:
      lo = mid
    else:
      hi = mid
  if lo < 0:
    raise InputTooLong(
        f"example {example.id!r}: its {method} input needs {count_tokens(render(0)) + 1} tokens "
        f"without any {'passage' if method == 'kard' else 'context'}, more than the input length "
        f"{max_tokens}; raise TASK_FEATURE_LENGTHS['inputs'] (the question, its choices and the "
        "cue are never cut)")
  return render(lo)
