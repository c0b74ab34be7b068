"""Reading the chosen answer out of generated text, and the KARD rationale filter.

Teachers and students end a rationale with a statement such as "So, the answer is B",
"the answer is (B) no", "Answer: B." or "So, the answer is Paris". `parse_answer` finds the last
such statement that names one of the example's choices, by label or by the choice's text, and
returns that choice's label. Text that is nothing but an answer ("(B) no", "B", "yes") parses too,
for answer-only outputs. Anything else gives None: a wrong parse would count as a vote, a None
only as an abstention.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Mapping, Sequence

from kard_jax.data.example import Choice, Example
from kard_jax.data.rationale import Rationale

# "answer is", "answer would be", "answer:", ... The last match in a text wins.
_STATEMENT = re.compile(
    r"\banswers?\b\s*(?:(?:is|would\s+be|should\s+be|will\s+be|must\s+be)\b\s*:?|[:=])", re.I)
_LEAD = re.compile(r"^[\s*_\"'`:\-]*(?:(?:option|choice)\s+)?", re.I)
_WORDS = re.compile(r"[^\w]+")
_SYNONYMS = {"true": "yes", "false": "no", "correct": "yes", "incorrect": "no"}


def _norm(text: str) -> str:
  return _WORDS.sub(" ", text.lower()).strip()


def _is_yes_no(choices: Sequence[Choice]) -> bool:
  return sorted(_norm(c.text) for c in choices) == ["no", "yes"]


def _by_text(rest: str, choices: Sequence[Choice], whole: bool) -> str | None:
  """The choice whose text `rest` starts with (the longest such), or equals when `whole`."""
  words = _norm(rest)
  if _is_yes_no(choices):
    first, _, tail = words.partition(" ")
    words = (_SYNONYMS.get(first, first) + " " + tail).strip()
  best, best_len = None, 0
  for c in choices:
    t = _norm(c.text)
    if not t:
      continue
    hit = words == t if whole else (words == t or words.startswith(t + " "))
    if hit and len(t) > best_len:
      best, best_len = c.label, len(t)
  return best


def _resolve(rest: str, choices: Sequence[Choice], whole: bool) -> str | None:
  """Maps what follows an answer statement (or, if `whole`, an entire output) to a label."""
  rest = _LEAD.sub("", rest, count=1)
  by_upper = {c.label.upper(): c for c in choices}
  labels = "|".join(re.escape(l) for l in sorted(by_upper, key=len, reverse=True))
  # "(B)", "[B]", "(b)": a bracketed label is unambiguous.
  m = re.match(rf"[(\[]\s*({labels})\s*[)\]]", rest, re.I)
  if m:
    return by_upper[m.group(1).upper()].label
  label = _by_text(rest, choices, whole)
  if label is not None:
    return label
  # A bare label: "B", "B.", "B) no", "b." -- but never the article in "a cat".
  m = re.match(rf"({labels})(?=$|[^\w])", rest, re.I)
  if not m:
    return None
  choice, after = by_upper[m.group(1).upper()], rest[m.end():]
  if m.group(1).islower() and after[:1].isspace() and _norm(after):
    return None
  if whole and _norm(after) not in ("", _norm(choice.text)):
    return None
  return choice.label


def parse_answer(text: str, choices: Sequence[Choice]) -> str | None:
  """The label of the choice `text` answers with, or None when it names none of them."""
  if not text or not choices:
    return None
  for m in reversed(list(_STATEMENT.finditer(text))):
    rest = text[m.end():].lstrip()
    label = _resolve(rest.split("\n", 1)[0], choices, whole=False)
    if label is not None:
      return label
  return _resolve(text.strip(), choices, whole=True)


def answer_statement(choice: Choice) -> str:
  """The closing sentence rationales end with, e.g. "So, the answer is (B) no."."""
  return f"So, the answer is ({choice.label}) {choice.text.strip().rstrip('.')}."


def filter_rationales(rationales: Iterable[Rationale], examples_by_id: Mapping[str, Example],
                      max_per_example: int | None = None) -> list[Rationale]:
  """KARD's filter: rationales that reach the gold answer, at most `max_per_example` each.

  A rationale's stored `answer` is used when set, otherwise it is parsed from its text (and filled
  in). Per example the lowest sample indices are kept; examples come in the order they first
  appear. Rationales of examples not in `examples_by_id` (another split) are dropped.
  """
  if max_per_example is not None and max_per_example < 0:
    raise ValueError(f"max_per_example must be >= 0, got {max_per_example}")
  groups: dict[str, list[Rationale]] = {}
  for r in rationales:
    if r.id in examples_by_id:
      groups.setdefault(r.id, []).append(r)
  out: list[Rationale] = []
  for example_id, group in groups.items():
    example = examples_by_id[example_id]
    kept = 0
    for r in sorted(group, key=lambda r: r.sample):
      if max_per_example is not None and kept >= max_per_example:
        break
      answer = r.answer if r.answer is not None else parse_answer(r.rationale, example.choices)
      if answer == example.answer:
        out.append(r if r.answer is not None else dataclasses.replace(r, answer=answer))
        kept += 1
  return out
