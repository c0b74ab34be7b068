"""Re-scoring a candidate list under another query: the reranker's training target.

KARD's reranker learns to order the question's BM25 candidates as the teacher's rationale would:
its target for candidate p is BM25(rationale, p). Those scores are computed here with the same
arithmetic as retrieval, so a candidate the rationale would also have retrieved gets exactly its
retrieval score, and a candidate sharing no term with the rationale gets 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kard_jax.data.rationale import Rationale
from kard_jax.retrieval.bm25_index import BM25Index
from kard_jax.retrieval.retrieval_file import RetrievalRecord


def positions_of(index: BM25Index, passage_ids: Sequence[str]) -> np.ndarray:
  """Index positions of passage ids (KeyError naming an id the index lacks)."""
  return np.fromiter((index.passages.position(pid) for pid in passage_ids), np.int64,
                     len(passage_ids))


def rescore(index: BM25Index, query: str, passage_ids: Sequence[str]) -> np.ndarray:
  """float32 BM25 scores of the given passages under `query`, in the given order."""
  return index.score(query, positions_of(index, passage_ids))


def rationale_targets(index: BM25Index, candidates: Sequence[RetrievalRecord],
                      rationales: Sequence[Rationale]) -> dict[tuple[str, int], np.ndarray]:
  """For each rationale with a candidate list for its example: BM25(rationale, candidate) for
  every candidate of that list, aligned with `record.passages`. Keyed by (example id, sample)."""
  by_example = {r.id: r for r in candidates}
  positions: dict[str, np.ndarray] = {}
  out = {}
  for r in rationales:
    record = by_example.get(r.id)
    if record is None:
      continue
    if r.id not in positions:
      positions[r.id] = positions_of(index, [p.id for p in record.passages])
    out[(r.id, r.sample)] = index.score(r.rationale, positions[r.id])
  return out
