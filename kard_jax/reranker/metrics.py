"""How well the reranker finds what the rationale needs, beside the BM25 baselines.

Two measurements, as in KARD and beyond it:
  * KARD's accuracy on held-out (question, rationale) pairs: among 8 candidates (the rationale's
    BM25 top passage and 7 others from both candidate lists), is that passage ranked 1st / in the
    top 3 / top 5? Reported for the reranker and for question-BM25 scoring the same lists.
  * recall@k (and hit@k) of gold evidence on held-out questions (`retrieval.metrics`), for
    question-BM25 (what the student reads without a reranker), the reranker (re-ordering
    question-BM25's top-N) and rationale-BM25: the ceiling, which needs the teacher's rationale
    that the student never has at test time. The ceiling covers only questions with a rationale,
    so the other two rows are repeated on that subset.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from kard_jax.reranker import data as data_lib
from kard_jax.retrieval import metrics as metrics_lib
from kard_jax.retrieval.ingest import normalize_text

DEFAULT_KS = metrics_lib.DEFAULT_KS


def ranked_ids(index, hits) -> list[list[str]]:
  return [[index.passages[int(p)].id for p in pos] for pos, _ in hits]


def gold_for_examples(examples, gold_queries) -> list[tuple[frozenset, int]]:
  """(gold passage ids, gold texts missing from the KB) per example, joined by question text."""
  by_question = {normalize_text(q.question): q for q in gold_queries}
  by_id = {q.id: q for q in gold_queries}
  out = []
  for ex in examples:
    q = by_question.get(normalize_text(ex.question)) or by_id.get(ex.id)
    out.append((q.gold, q.missing) if q is not None else (frozenset(), 0))
  return out


def recall_table(index, reranker, questions: Sequence[str], gold: Sequence[tuple[frozenset, int]],
                 *, top_n: int = 100, ks: Sequence[int] = DEFAULT_KS,
                 rationales: Mapping[int, Sequence[str]] | None = None,
                 fusion_weight: float = 0.0) -> dict:
  """Recall@k / hit@k rows; `rationales` maps a question's position to its teacher rationales.

  Returns {"all": {"question_bm25": row, "reranker": row[, "reranker_bm25": row]},
           "with_rationale": {... and "rationale_bm25"}} (the second only with rationales);
  "reranker_bm25" (with `fusion_weight` > 0) ranks by `inference.fuse`. Each row has "n"
  (questions, or rationales for the ceiling) and the metrics.
  """
  ks = sorted(set(ks))
  q_hits = index.search(list(questions), max(top_n, max(ks)))
  pool = [(p[:top_n], s[:top_n]) for p, s in q_hits]
  systems = {"question_bm25": ranked_ids(index, q_hits),
             "reranker": ranked_ids(index, reranker.rerank(list(questions), pool, max(ks)))}
  if fusion_weight:
    systems["reranker_bm25"] = ranked_ids(index, reranker.rerank(
        list(questions), pool, max(ks), bm25_weight=fusion_weight))

  def row(ids, rows):
    return metrics_lib.recall_at_k([ids[i] for i in rows], [gold[i][0] for i in rows], ks,
                                   [gold[i][1] for i in rows])

  everyone = list(range(len(questions)))
  out = {"all": {name: row(ids, everyone) for name, ids in systems.items()}}
  if rationales:
    keep = [i for i in everyone if rationales.get(i) and (gold[i][0] or gold[i][1])]
    texts = [(i, t) for i in keep for t in rationales[i]]
    r_ids = ranked_ids(index, index.search([t for _, t in texts], max(ks)))
    out["with_rationale"] = {name: row(ids, keep) for name, ids in systems.items()}
    out["with_rationale"]["rationale_bm25"] = metrics_lib.recall_at_k(
        r_ids, [gold[i][0] for i, _ in texts], ks, [gold[i][1] for i, _ in texts])
  return out


def rank_of_first(scores: np.ndarray) -> int:
  """0-based rank of candidate 0 under `scores`; ties rank it last, so a constant scorer gets
  no credit."""
  return int(np.sum(np.asarray(scores)[1:] >= np.asarray(scores)[0]))


def kard_accuracy(scores: Sequence[np.ndarray], ks: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
  """{"top{k}": share of lists whose first candidate is in the scorer's top k}."""
  ranks = np.asarray([rank_of_first(s) for s in scores])
  return {f"top{k}": float(np.mean(ranks < k)) if len(ranks) else float("nan") for k in ks}


def kard_lists(examples: Sequence[data_lib.RerankExample], config: data_lib.CandidateConfig,
               seed: int) -> list[np.ndarray]:
  """The fixed evaluation lists that `data.RerankerInput` builds for the same examples/seed."""
  out = []
  for i, ex in enumerate(examples):
    positions, _, mask = data_lib.eval_candidates(ex, config, data_lib.rng_for(seed, 1, i))
    out.append(positions[mask > 0])
  return out


def kard_table(index, reranker, examples: Sequence[data_lib.RerankExample],
               config: data_lib.CandidateConfig, seed: int) -> dict:
  """KARD's top-1/3/5 for the reranker and for question-BM25 scoring the same lists."""
  lists = kard_lists(examples, config, seed)
  questions = [ex.question for ex in examples]
  bm25 = [index.score(q, c) for q, c in zip(questions, lists)]
  return {"n": len(lists), "question_bm25": kard_accuracy(bm25),
          "reranker": kard_accuracy(reranker.score(questions, lists))}
