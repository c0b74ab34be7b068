"""Retrieval metrics: recall@k and hit@k of gold evidence, for question and rationale queries.

recall@k: the fraction of a query's gold passages among its top k, averaged over queries (gold
texts absent from the knowledge base count as missed). hit@k: the fraction of queries with at
least one gold passage in their top k. A rationale query is scored against its question's gold.
"""

from __future__ import annotations

from typing import Collection, Sequence

import numpy as np

from kard_jax.retrieval.bm25_index import BM25Index
from kard_jax.retrieval.gold import GoldQuery, RationaleQuery, join_rationales

DEFAULT_KS = (1, 5, 10, 20)
QUERY_KINDS = ("question", "question_choices", "rationale")


def recall_at_k(retrieved: Sequence[Sequence[str]], gold: Sequence[Collection[str]],
                ks: Sequence[int] = DEFAULT_KS, missing: Sequence[int] | None = None
                ) -> dict[str, float]:
  """Mean recall@k and hit@k over queries with gold evidence (those without are skipped)."""
  if len(retrieved) != len(gold):
    raise ValueError(f"{len(retrieved)} retrieved lists for {len(gold)} gold sets")
  missing = [0] * len(gold) if missing is None else missing
  recall = {k: [] for k in ks}
  hit = {k: [] for k in ks}
  for ranked, g, m in zip(retrieved, gold, missing):
    g = set(g)
    if not g and not m:
      continue
    for k in ks:
      found = len(g.intersection(ranked[:k]))
      recall[k].append(found / (len(g) + m))
      hit[k].append(float(found > 0))
  out: dict[str, float] = {"n": len(recall[ks[0]]) if ks else 0}
  for k in ks:
    out[f"recall@{k}"] = float(np.mean(recall[k])) if recall[k] else 0.0
  for k in ks:
    out[f"hit@{k}"] = float(np.mean(hit[k])) if hit[k] else 0.0
  return out


def _ranked_ids(index: BM25Index, texts: Sequence[str], k: int,
                n_threads: int | None) -> list[list[str]]:
  hits = index.search(texts, k, n_threads=n_threads)
  return [[index.passages[p].id for p in h[0].tolist()] for h in hits]


def evaluate(index: BM25Index, queries: Sequence[GoldQuery], *,
             kinds: Sequence[str] = ("question",),
             rationales: Sequence[RationaleQuery] | None = None,
             ks: Sequence[int] = DEFAULT_KS, n_threads: int | None = None,
             only_with_rationales: bool = False) -> list[dict]:
  """One row per query kind: {"query", "n", "n_examples", "recall@k"..., "hit@k"...}.

  `only_with_rationales` keeps the questions that have a rationale, so question and rationale
  rows compare the same questions.
  """
  ks = sorted(set(ks))
  if only_with_rationales:
    if not rationales:
      raise ValueError("only_with_rationales needs rationales")
    covered = {q.id for q, _ in join_rationales(queries, rationales)}
    queries = [q for q in queries if q.id in covered]
  rows = []
  for kind in kinds:
    if kind not in QUERY_KINDS:
      raise ValueError(f"unknown query kind {kind!r}; choose from {QUERY_KINDS}")
    if kind == "rationale":
      if not rationales:
        raise ValueError("rationale queries need rationales")
      pairs = join_rationales(queries, rationales)
      golds = [q for q, _ in pairs]
      texts = [r.text for _, r in pairs]
    else:
      golds = list(queries)
      texts = [q.question if kind == "question" else " ".join((q.question,) + q.choices)
               for q in golds]
    ranked = _ranked_ids(index, texts, max(ks), n_threads) if texts else []
    row = {"query": kind, "n_examples": len({q.id for q in golds})}
    row.update(recall_at_k(ranked, [q.gold for q in golds], ks, [q.missing for q in golds]))
    rows.append(row)
  return rows
