"""Gold evidence for retrieval evaluation: which passages each question should retrieve.

  - StrategyQA: `golden_sentences_{train,dev}.json`, the Wikipedia sentences aligned to each
    question's facts, matched by normalised text against the knowledge base
    (`wiki_sentence_kb.jsonl`);
  - OpenBookQA: `fact1`, the open-book fact the question was written from (dev.jsonl,
    test_complete.jsonl), matched against `openbook.txt`;
  - prepared examples whose `extra["gold_passages"]` lists passage ids (the synthetic benchmark).
Rationale queries are joined to questions by normalised question text when the rationale file
carries the question (the raw teacher files do), else by example id.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Iterable, Sequence

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError
from kard_jax.retrieval.ingest import normalize_text
from kard_jax.retrieval.passages import Passage

GOLD_FORMATS = ("strategyqa", "obqa", "examples")


@dataclasses.dataclass(frozen=True)
class GoldQuery:
  id: str
  question: str
  gold: frozenset[str]  # passage ids
  choices: tuple[str, ...] = ()
  missing: int = 0  # gold texts found in no passage: they count as never retrieved


@dataclasses.dataclass(frozen=True)
class RationaleQuery:
  id: str
  sample: int
  text: str
  question: str | None = None


TextIndex = dict[str, list[str]]  # normalised passage text -> passage ids


def text_index(passages: Iterable[Passage]) -> TextIndex:
  out: TextIndex = collections.defaultdict(list)
  for p in passages:
    out[normalize_text(p.text)].append(p.id)
  return dict(out)


def _match(texts: Iterable[str], index: TextIndex) -> tuple[frozenset[str], int]:
  found, missing = set(), 0
  for t in {normalize_text(t) for t in texts if t and t.strip()}:
    if t in index:
      found.update(index[t])
    else:
      missing += 1
  return frozenset(found), missing


def _load_json(path: str):
  if not os.path.isfile(path):
    raise InputError(path, "file not found")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise InputError(path, f"invalid JSON ({e.msg})", e.lineno) from None


def strategyqa_gold(paths: Sequence[str], index: TextIndex) -> list[GoldQuery]:
  """Questions with at least one non-empty golden sentence."""
  out = []
  for path in paths:
    data = _load_json(path)
    if not isinstance(data, list):
      raise InputError(path, "expected a JSON list of questions")
    for i, entry in enumerate(data):
      try:
        texts = [s for step in entry["golden_sentence"] for s in step]
        qid, question = str(entry["qid"]), entry["question"]
      except (KeyError, TypeError) as e:
        raise InputError(path, f"entry {i}: needs qid, question, golden_sentence ({e})") from None
      gold, missing = _match(texts, index)
      if gold or missing:
        out.append(GoldQuery(qid, question, gold, (), missing))
  return out


def obqa_gold(paths: Sequence[str], index: TextIndex) -> list[GoldQuery]:
  """OpenBookQA questions (official schema) with their `fact1`."""
  out = []
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    for lineno, obj in jsonl.iter_jsonl(path):
      try:
        question = obj["question"]["stem"]
        choices = tuple(c["text"] for c in obj["question"]["choices"])
        fact = obj["fact1"]
      except (KeyError, TypeError) as e:
        raise InputError(path, f"needs question.stem, question.choices and fact1 ({e})",
                         lineno) from None
      gold, missing = _match([fact], index)
      out.append(GoldQuery(str(obj.get("id") or f"{stem}-{lineno}"), question, gold, choices,
                           missing))
  return out


def examples_gold(paths: Sequence[str]) -> list[GoldQuery]:
  """Prepared examples (examples/*.jsonl) whose extra["gold_passages"] names passage ids."""
  from kard_jax.data.example import read_examples

  out = []
  for path in paths:
    for ex in read_examples(path):
      gold = ex.extra.get("gold_passages") or []
      if gold:
        out.append(GoldQuery(ex.id, ex.question, frozenset(map(str, gold)),
                             tuple(c.text for c in ex.choices)))
  return out


def load_gold(fmt: str, paths: Sequence[str], passages: Iterable[Passage]) -> list[GoldQuery]:
  if fmt == "strategyqa":
    return strategyqa_gold(paths, text_index(passages))
  if fmt == "obqa":
    return obqa_gold(paths, text_index(passages))
  if fmt == "examples":
    return examples_gold(paths)
  raise ValueError(f"unknown gold format {fmt!r}; choose from {GOLD_FORMATS}")


def load_rationales(path: str) -> list[RationaleQuery]:
  """Rationales in our format (`id`, `sample`, `rationale`) or a raw teacher file (`qid`,
  `question`, `rationale`, samples numbered in file order)."""
  out, counts = [], collections.Counter()
  for lineno, obj in jsonl.iter_jsonl(path):
    text = obj.get("rationale")
    if not isinstance(text, str) or not text.strip():
      raise InputError(path, "each line needs a non-empty 'rationale'", lineno)
    if "id" in obj and "sample" in obj:
      rid, sample = str(obj["id"]), int(obj["sample"])
    elif "qid" in obj:
      rid = str(obj["qid"])
      sample = counts[rid]
    else:
      raise InputError(path, "each line needs 'id' and 'sample' (or 'qid')", lineno)
    counts[rid] += 1
    question = obj.get("question")
    out.append(RationaleQuery(rid, sample, text, question if isinstance(question, str) else None))
  return out


def join_rationales(queries: Sequence[GoldQuery], rationales: Sequence[RationaleQuery]
                    ) -> list[tuple[GoldQuery, RationaleQuery]]:
  """Pairs each rationale with its gold question (by question text if it has one, else id)."""
  by_question = {normalize_text(q.question): q for q in queries}
  by_id = {q.id: q for q in queries}
  pairs = []
  for r in rationales:
    q = by_question.get(normalize_text(r.question)) if r.question else by_id.get(r.id)
    if q is not None:
      pairs.append((q, r))
  return pairs
