"""Retrieval files: the passages retrieved for each query, keyed by example id.

One JSON line per query:
  {"id": EXAMPLE_ID, "sample": K or null, "query": "question" | "rationale" | "reranked",
   "passages": [{"id": PID, "title": "...", "text": "...", "score": 1.23}, ...]}
`sample` is the rationale's sample index when a rationale was the query. Passages are best first and
carry their text, so SeqIO tasks read them without an index. Standard names inside
`DATA/<benchmark>/retrieval/`: `rationale_train.jsonl`, `question_{split}.jsonl`,
`reranked_{split}.jsonl`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import numpy as np

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError

QUERY_KINDS = ("question", "rationale", "reranked")


@dataclasses.dataclass(frozen=True)
class RetrievedPassage:
  id: str
  title: str
  text: str
  score: float


@dataclasses.dataclass(frozen=True)
class RetrievalRecord:
  id: str  # the example's id
  sample: int | None  # the rationale's sample index, None for a question query
  query: str  # one of QUERY_KINDS
  passages: tuple[RetrievedPassage, ...]

  @property
  def key(self) -> tuple[str, int | None]:
    return (self.id, self.sample)

  def to_json(self) -> dict[str, Any]:
    return {"id": self.id, "sample": self.sample, "query": self.query,
            "passages": [{"id": p.id, "title": p.title, "text": p.text,
                          "score": _compact(p.score)} for p in self.passages]}


def _compact(score: float) -> float:
  """The shortest decimal that reads back as the same float32 (scores are float32)."""
  return float(str(np.float32(score)))


def record_from_json(obj: dict[str, Any], path, line: int | None) -> RetrievalRecord:
  for key in ("id", "sample", "query", "passages"):
    if key not in obj:
      raise InputError(path, f"missing field {key!r}", line)
  if obj["query"] not in QUERY_KINDS:
    raise InputError(path, f"query must be one of {QUERY_KINDS}, got {obj['query']!r}", line)
  sample = obj["sample"]
  if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int)):
    raise InputError(path, f"sample must be an integer or null, got {sample!r}", line)
  if not isinstance(obj["passages"], list):
    raise InputError(path, "passages must be a list", line)
  passages = []
  for i, p in enumerate(obj["passages"]):
    try:
      passages.append(RetrievedPassage(str(p["id"]), p.get("title") or "", p["text"],
                                       float(p["score"])))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
      raise InputError(path, f"malformed passage {i} ({type(e).__name__}: {e})", line) from None
    if i and passages[-1].score > passages[-2].score:
      raise InputError(path, f"passages are not best first (passage {i} scores higher than "
                       f"passage {i - 1})", line)
  return RetrievalRecord(str(obj["id"]), sample, obj["query"], tuple(passages))


def read_retrieval_file(path) -> list[RetrievalRecord]:
  """Reads and checks a retrieval file; (id, sample) pairs must be unique."""
  out, seen = [], {}
  for lineno, obj in jsonl.iter_jsonl(path):
    rec = record_from_json(obj, path, lineno)
    if rec.key in seen:
      raise InputError(path, f"duplicate (id, sample) {rec.key} (first on line {seen[rec.key]})",
                       lineno)
    seen[rec.key] = lineno
    out.append(rec)
  return out


def write_retrieval_file(path, records: Iterable[RetrievalRecord]) -> int:
  """Atomically writes records (a crash leaves the old file or none, never half of one)."""
  return jsonl.write_jsonl(path, (r.to_json() for r in records))


def by_key(records: Sequence[RetrievalRecord]) -> dict[tuple[str, int | None], RetrievalRecord]:
  return {r.key: r for r in records}


def standard_name(query: str, split: str) -> str:
  """`rationale_train.jsonl`, `question_{split}.jsonl` or `reranked_{split}.jsonl`."""
  if query not in QUERY_KINDS:
    raise ValueError(f"query must be one of {QUERY_KINDS}, got {query!r}")
  return f"{query}_{split}.jsonl"
