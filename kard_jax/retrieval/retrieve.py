"""KARD's two retrieval modes over a BM25 index, producing retrieval records.

Training: each teacher *rationale* is the query (one passage list per rationale, `sample` set);
the student learns to reason with the knowledge its teacher's rationale points at.
Inference: the *question* is the query, and its top-N candidates (default 100) go to the reranker,
which learns to order them as the rationale would have (see `rescore.py`).
"""

from __future__ import annotations

from typing import Sequence

from kard_jax.data.example import Example
from kard_jax.data.rationale import Rationale
from kard_jax.retrieval.bm25_index import BM25Index
from kard_jax.retrieval.retrieval_file import RetrievalRecord, RetrievedPassage
from kard_jax.retrieval.scoring import Hits

DEFAULT_CANDIDATES = 100  # question-as-query candidates handed to the reranker
DEFAULT_RATIONALE_K = 10  # passages kept per rationale for training


def question_query(example: Example, with_choices: bool = False) -> str:
  """The question as a query; optionally followed by every choice (no answer is revealed)."""
  if not with_choices:
    return example.question
  return " ".join([example.question] + [c.text for c in example.choices])


def to_record(index: BM25Index, example_id: str, sample: int | None, query: str,
              hits: Hits) -> RetrievalRecord:
  passages = []
  for pos, score in zip(hits[0].tolist(), hits[1].tolist()):
    p = index.passages[pos]
    passages.append(RetrievedPassage(p.id, p.title, p.text, score))
  return RetrievalRecord(example_id, sample, query, tuple(passages))


def retrieve_questions(index: BM25Index, examples: Sequence[Example], *,
                       k: int = DEFAULT_CANDIDATES, with_choices: bool = False,
                       n_threads: int | None = None, show_progress: bool = True
                       ) -> list[RetrievalRecord]:
  """Question-as-query: the top-k candidates of every example (inference, reranker input)."""
  hits = index.search([question_query(ex, with_choices) for ex in examples], k,
                      n_threads=n_threads, show_progress=show_progress)
  return [to_record(index, ex.id, None, "question", h) for ex, h in zip(examples, hits)]


def retrieve_rationales(index: BM25Index, rationales: Sequence[Rationale], *,
                        k: int = DEFAULT_RATIONALE_K, n_threads: int | None = None,
                        show_progress: bool = True) -> list[RetrievalRecord]:
  """Rationale-as-query: one passage list per (example, sample) (training)."""
  hits = index.search([r.rationale for r in rationales], k, n_threads=n_threads,
                      show_progress=show_progress)
  return [to_record(index, r.id, r.sample, "rationale", h) for r, h in zip(rationales, hits)]
