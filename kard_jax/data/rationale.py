"""The one file format for teacher rationales, whatever produced them.

One JSON line per rationale:
  {"id": EXAMPLE_ID, "sample": K, "rationale": "... So, the answer is B.", "answer": "B" | null,
   "teacher": "gpt-3.5-turbo-instruct", "sampling": {"temperature": 0.7, "n": 10, ...}}
`sample` numbers the rationales of one example (0, 1, ...); `answer` is the label parsed from the
rationale (null when none could be parsed). Several lines share an example id.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError


@dataclasses.dataclass(frozen=True)
class Rationale:
  id: str  # the example's id
  sample: int
  rationale: str
  answer: str | None
  teacher: str = ""
  sampling: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    return {"id": self.id, "sample": self.sample, "rationale": self.rationale,
            "answer": self.answer, "teacher": self.teacher, "sampling": dict(self.sampling)}

  @classmethod
  def from_json(cls, obj: Mapping[str, Any]) -> "Rationale":
    return cls(id=str(obj["id"]), sample=int(obj["sample"]), rationale=obj["rationale"],
               answer=obj.get("answer"), teacher=obj.get("teacher", ""),
               sampling=dict(obj.get("sampling") or {}))


def read_rationales(path) -> list[Rationale]:
  out, seen = [], {}
  for lineno, obj in jsonl.iter_jsonl(path):
    for key in ("id", "sample", "rationale"):
      if key not in obj:
        raise InputError(path, f"missing field {key!r}", lineno)
    try:
      r = Rationale.from_json(obj)
    except (TypeError, ValueError) as e:
      raise InputError(path, f"malformed rationale ({e})", lineno) from None
    if not isinstance(r.rationale, str) or not r.rationale.strip():
      raise InputError(path, f"empty rationale for example {r.id!r}", lineno)
    key = (r.id, r.sample)
    if key in seen:
      raise InputError(path, f"duplicate (id, sample) {key} (first on line {seen[key]})", lineno)
    seen[key] = lineno
    out.append(r)
  return out


def write_rationales(path, rationales: Iterable[Rationale]) -> int:
  return jsonl.write_jsonl(path, (r.to_json() for r in rationales))


def group_by_example(rationales: Iterable[Rationale]) -> dict[str, list[Rationale]]:
  groups: dict[str, list[Rationale]] = {}
  for r in rationales:
    groups.setdefault(r.id, []).append(r)
  for rs in groups.values():
    rs.sort(key=lambda r: r.sample)
  return groups
