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

# Where an answer statement ends and its answer begins: "answer is", "answer would be", "answer:",
# "the correct option is", "Conclusion:", a conclusion word right before a yes/no that ends its
# clause ("So, no, ...", but not "In conclusion, no matter ..."), and a text's opening "Yes, ..."
# / "No, ...". The last statement in a text that names a choice wins.
_STATEMENT = re.compile(
    r"\banswers?\b\s*(?:(?:is|would\s+be|should\s+be|will\s+be|must\s+be)\b\s*:?|[:=])"
    r"|\b(?:correct|right|best)\s+(?:option|choice)\s+(?:is|would\s+be)\b\s*:?"
    r"|\bconclusion\s*:"
    r"|\b(?:(?:so|thus|therefore|hence|in\s+conclusion)\s*,?\s*"
    r"(?:to\s+answer\s+(?:the|your|this)\s+question\s*,?\s*)?"
    r"|to\s+answer\s+(?:the|your|this)\s+question\s*,?\s*)(?=(?:yes|no)\s*[,.!;])"
    # A yes/no answer that opens the text: "No, Amazon was not involved ...".
    r"|^\s*(?=(?:yes|no)\s*[,.!;])", re.I)
# The reversed form, "B is the answer", "(C) is the correct option": the label comes first.
_REVERSED = r"(?:is|would\s+be)\s+the\s+(?:(?:correct|right|best|final)\s+)?(?:answer|option|choice)\b"
_LEAD = re.compile(r"^[\s*_\"'`:\-]*(?:(?:option|choice)\s+)?", re.I)
_WORDS = re.compile(r"[^\w]+")
_SYNONYMS = {"true": "yes", "false": "no", "correct": "yes", "incorrect": "no"}
# What joins a second answer to the first in a hedge: "A or B", "(A) and (C)", "A, B", "A/B".
_JOIN = re.compile(r"\s*(?:,|/|;|&|\bor\b|\band\b)\s*(?:(?:either|both|maybe|perhaps)\s+)?",
                   re.I)
HEDGE = "<hedge>"  # `_resolve`'s result for a statement that names two different choices


def _norm(text: str) -> str:
  return _WORDS.sub(" ", text.lower()).strip()


def _is_yes_no(choices: Sequence[Choice]) -> bool:
  return sorted(_norm(c.text) for c in choices) == ["no", "yes"]


def _by_text(rest: str, choices: Sequence[Choice], whole: bool) -> tuple[str | None, int]:
  """(label of the choice whose text `rest` starts with (the longest such), or equals when
  `whole`; the number of normalised words it took)."""
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
  return best, (len(_norm(next(c.text for c in choices if c.label == best)).split())
                if best is not None else 0)


def _skip_words(text: str, n: int) -> str:
  """`text` after its first `n` words (as `_norm` splits them)."""
  for _ in range(n):
    m = re.match(r"[^\w]*\w+", text)
    if not m:
      return ""
    text = text[m.end():]
  return text


def _labels(choices: Sequence[Choice]) -> tuple[dict[str, Choice], str]:
  by_upper = {c.label.upper(): c for c in choices}
  return by_upper, "|".join(re.escape(l) for l in sorted(by_upper, key=len, reverse=True))


def _first(rest: str, choices: Sequence[Choice], whole: bool) -> tuple[str | None, str]:
  """(label named at the start of `rest`, the text after it)."""
  rest = _LEAD.sub("", rest, count=1)
  by_upper, labels = _labels(choices)
  # "(B)", "[B]", "(b)": a bracketed label is unambiguous; its choice's text may follow.
  m = re.match(rf"[(\[]\s*({labels})\s*[)\]]", rest, re.I)
  if m:
    choice, after = by_upper[m.group(1).upper()], rest[m.end():]
    label, n = _by_text(after, (choice,), whole=False)
    return choice.label, (_skip_words(after, n) if label else after)
  label, n = _by_text(rest, choices, whole)
  if label is not None:
    return label, _skip_words(rest, n)
  # A bare label: "B", "B.", "B) no", "b." -- but never the article in "a cat".
  m = re.match(rf"({labels})(?=$|[^\w])", rest, re.I)
  if not m:
    return None, rest
  choice, after = by_upper[m.group(1).upper()], rest[m.end():]
  if m.group(1).islower() and after[:1].isspace() and _norm(after):
    return None, rest
  if whole and _norm(after) not in ("", _norm(choice.text)) and not _JOIN.match(after):
    return None, rest
  after = after.lstrip(")]. ") if not _JOIN.match(after) else after
  label, n = _by_text(after, (choice,), whole=False)
  return choice.label, (_skip_words(after, n) if label else after)


def _resolve(rest: str, choices: Sequence[Choice], whole: bool) -> str | None:
  """Maps what follows an answer statement (or, if `whole`, an entire output) to a label;
  HEDGE when it names a second, different choice ("A or B", "(A) and (C)", "A, B")."""
  label, after = _first(rest, choices, whole)
  if label is None:
    return None
  join = _JOIN.match(after)
  if join:
    other, tail = _first(after[join.end():], choices, whole=False)
    if other is not None and other != label:
      return HEDGE
    if whole and other is None and _norm(after):
      return None
  return label


def parse_answer(text: str, choices: Sequence[Choice]) -> str | None:
  """The label of the choice `text` answers with, or None when it names none of them or names
  two different ones in its answer statement (a hedge is not an answer)."""
  if not text or not choices:
    return None
  _, labels = _labels(choices)
  reversed_form = re.compile(rf"(?:[(\[]\s*({labels})\s*[)\]]|\b({labels}|yes|no)\b)\s+"
                             + _REVERSED, re.I)
  statements = [(m.start(), text[m.end():].lstrip()) for m in _STATEMENT.finditer(text)]
  statements += [(m.start(), m.group(0)) for m in reversed_form.finditer(text)
                 if m.group(2) is None or not m.group(2).islower()  # "a is the answer": an article
                 or m.group(2) in ("yes", "no")]
  for _, rest in sorted(statements, key=lambda s: s[0], reverse=True):
    label = _resolve(rest.split("\n", 1)[0], choices, whole=False)
    if label == HEDGE:
      return None
    if label is not None:
      return label
  label = _resolve(text.strip(), choices, whole=True)
  return None if label == HEDGE else label


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
