"""The user's message as a benchmark question, and the student's input built from it.

A message is the question, optionally with its choices in the benchmark format
("Question: Q Answer Choices: (A) a (B) b ...", or choices on their own lines "(A) a"). Free text
without choices is a question with no choices: the student still reasons, but no answer can be
parsed from its text against choices.

The model input is built by the same function the evaluation tasks use (`tasks/records.py` calls
`prompts.render_inputs`), so the served student reads exactly what it was evaluated on.
"""

from __future__ import annotations

import re
from typing import Sequence

from kard_jax.data import prompts
from kard_jax.data.example import Choice, Example

_PREFIX = re.compile(r"^\s*question\s*:\s*", re.I)
_CHOICES_CUE = re.compile(r"\banswer\s+choices\s*:\s*", re.I)
# "(A) text" up to the next "(B)" (labels are one letter or digit, in brackets).
_CHOICE = re.compile(r"\(([A-Za-z0-9])\)\s*(.*?)\s*(?=\([A-Za-z0-9]\)|$)", re.S)


def parse_question(text: str) -> tuple[str, tuple[Choice, ...]]:
  """(question, choices) of a message; choices are () when the message lists none."""
  text = prompts.clean(text)
  text = _PREFIX.sub("", text, count=1)
  cue = _CHOICES_CUE.search(text)
  if cue:
    question, listed = text[:cue.start()], text[cue.end():]
  else:
    first = re.search(r"\(A\)\s", text)
    if not first:
      return text.strip(), ()
    question, listed = text[:first.start()], text[first.start():]
  choices = tuple(Choice(m.group(1).upper(), m.group(2).strip())
                  for m in _CHOICE.finditer(listed) if m.group(2).strip())
  return question.strip(), choices


def model_input(question: str, choices: Sequence[Choice], passages: Sequence[str]) -> str:
  """The KARD student's input text (question, choices, passages), as its evaluation builds it."""
  example = Example(id="request", question=question, choices=tuple(choices), answer="")
  return prompts.render_inputs("kard", example, passages=passages)
