"""The normalised multiple-choice example every benchmark is loaded into.

On disk an example is one JSON line:
  {"id": "...", "question": "...", "choices": [{"label": "A", "text": "..."}, ...],
   "answer": "A", "extra": {...}}
`extra` carries whatever the source has beyond that (facts, decomposition, evidence, gold facts,
entity split of the synthetic benchmark); later stages read it by key and never require it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Mapping, Sequence

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError


@dataclasses.dataclass(frozen=True)
class Choice:
  label: str
  text: str


@dataclasses.dataclass(frozen=True)
class Example:
  id: str
  question: str
  choices: tuple[Choice, ...]
  answer: str  # the label of the correct choice
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def labels(self) -> tuple[str, ...]:
    return tuple(c.label for c in self.choices)

  @property
  def answer_text(self) -> str:
    for c in self.choices:
      if c.label == self.answer:
        return c.text
    raise KeyError(self.answer)

  def to_json(self) -> dict[str, Any]:
    return {
        "id": self.id,
        "question": self.question,
        "choices": [{"label": c.label, "text": c.text} for c in self.choices],
        "answer": self.answer,
        "extra": dict(self.extra),
    }

  @classmethod
  def from_json(cls, obj: Mapping[str, Any]) -> "Example":
    return cls(
        id=str(obj["id"]),
        question=obj["question"],
        choices=tuple(Choice(str(c["label"]), c["text"]) for c in obj["choices"]),
        answer=str(obj["answer"]),
        extra=dict(obj.get("extra") or {}),
    )


def validate(example: Example, path, line: int | None = None) -> Example:
  """Checks the invariants every stage relies on; raises InputError naming the place."""
  if not example.id:
    raise InputError(path, "missing example id", line)
  if not example.question or not example.question.strip():
    raise InputError(path, f"example {example.id!r}: empty question", line)
  if len(example.choices) < 2:
    raise InputError(path, f"example {example.id!r}: needs at least 2 choices", line)
  seen = set()
  for c in example.choices:
    if not c.text or not str(c.text).strip():
      raise InputError(path, f"example {example.id!r}: empty choice {c.label!r}", line)
    if c.label in seen:
      raise InputError(path, f"example {example.id!r}: duplicate choice label {c.label!r}", line)
    seen.add(c.label)
  if example.answer not in seen:
    raise InputError(
        path, f"example {example.id!r}: unknown answer label {example.answer!r} "
        f"(choices are {sorted(seen)})", line)
  return example


def read_examples(path) -> list[Example]:
  """Reads a normalised examples file, checking each line and that ids are unique."""
  out: list[Example] = []
  seen: dict[str, int] = {}
  for lineno, obj in jsonl.iter_jsonl(path):
    for key in ("id", "question", "choices", "answer"):
      if key not in obj:
        raise InputError(path, f"missing field {key!r}", lineno)
    try:
      ex = Example.from_json(obj)
    except (KeyError, TypeError) as e:
      raise InputError(path, f"malformed example ({e})", lineno) from None
    validate(ex, path, lineno)
    if ex.id in seen:
      raise InputError(path, f"duplicate id {ex.id!r} (first on line {seen[ex.id]})", lineno)
    seen[ex.id] = lineno
    out.append(ex)
  return out


def write_examples(path, examples: Iterable[Example]) -> int:
  return jsonl.write_jsonl(path, (ex.to_json() for ex in examples))


def by_id(examples: Sequence[Example]) -> dict[str, Example]:
  return {ex.id: ex for ex in examples}


def iter_choice_lines(example: Example) -> Iterator[str]:
  for c in example.choices:
    yield f"({c.label}) {c.text}"
