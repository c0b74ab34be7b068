"""BM25 scoring over the term x passage score matrix: batched top-k and candidate re-scoring.

bm25s stores an index as a CSC (passage x term) matrix of precomputed per-term BM25 scores; read
as CSR it is the (term x passage) matrix M, row t holding term t's postings. A batch of queries is
a sparse (query x term) matrix Q of term counts, and Q @ M holds the BM25 score of every passage
that shares a term with a query, never touching the others. That sparse product runs in C++
without the GIL, so batches run in parallel threads; the top-k then only looks at passages that
matched.

`scores_for` computes the same sums for a given candidate list with the same float32 operations
in the same order, so a re-scored passage gets exactly the score retrieval gives it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import numpy as np
import scipy.sparse as sp

T = TypeVar("T")
R = TypeVar("R")

Hits = tuple[np.ndarray, np.ndarray]  # (passage positions int64, scores float32), best first


def default_threads() -> int:
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:  # not on Linux
    return max(1, os.cpu_count() or 1)


def map_in_threads(fn: Callable[[T], R], items: Sequence[T], n_threads: int) -> list[R]:
  """`fn` over `items`, results in order, on up to `n_threads` threads (the sparse products and
  top-k selections release the GIL); one thread, or one item, runs inline."""
  if n_threads <= 1 or len(items) <= 1:
    return [fn(x) for x in items]
  with ThreadPoolExecutor(max_workers=n_threads) as pool:
    return list(pool.map(fn, items))


def select_top_k(positions: np.ndarray, scores: np.ndarray, k: int) -> Hits:
  """The k best (score descending, then position ascending, so ties are deterministic)."""
  if len(scores) > k:
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    keep = scores >= kth  # ties at the boundary may keep a few more; the sort below trims them
    positions, scores = positions[keep], scores[keep]
  order = np.lexsort((positions, -scores))[:k]
  return positions[order].astype(np.int64), scores[order]


class TermMatrix:
  """The (term x passage) BM25 score matrix, usually over memory-mapped arrays."""

  def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, num_docs: int):
    self.num_docs = int(num_docs)
    self.num_terms = len(indptr) - 1
    self.data, self.indices, self.indptr = data, indices, indptr
    # copy=False keeps the memory-mapped postings as they are (only indptr may be narrowed).
    self._csr = sp.csr_matrix((data, indices, indptr), shape=(self.num_terms, self.num_docs),
                              copy=False)
    self._csr.has_sorted_indices = True

  def query_matrix(self, queries: Sequence[np.ndarray]) -> sp.csr_matrix:
    """Queries (arrays of term ids, repeats allowed) as a (query x term) matrix of counts."""
    indptr = np.zeros(len(queries) + 1, np.int64)
    cols, vals = [], []
    for i, q in enumerate(queries):
      terms, counts = np.unique(np.asarray(q, np.int64), return_counts=True)
      if len(terms) and (terms[0] < 0 or terms[-1] >= self.num_terms):
        raise ValueError(f"query {i} has term ids outside [0, {self.num_terms})")
      cols.append(terms)
      vals.append(counts.astype(np.float32))
      indptr[i + 1] = indptr[i] + len(terms)
    cols_a = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    vals_a = np.concatenate(vals) if vals else np.zeros(0, np.float32)
    q = sp.csr_matrix((vals_a, cols_a, indptr), shape=(len(queries), self.num_terms))
    q.has_sorted_indices = True
    return q

  def _top_k_batch(self, queries: Sequence[np.ndarray], k: int) -> list[Hits]:
    s = self.query_matrix(queries) @ self._csr
    out = []
    for i in range(len(queries)):
      a, b = s.indptr[i], s.indptr[i + 1]
      out.append(select_top_k(s.indices[a:b], s.data[a:b], k))
    return out

  def top_k(self, queries: Sequence[np.ndarray], k: int, n_threads: int | None = None,
            batch_size: int = 32, progress=None) -> list[Hits]:
    """Top-k passages of each query; passages sharing no term with a query are never returned."""
    if k < 1:
      raise ValueError(f"k must be positive, got {k}")
    batches = [queries[i:i + batch_size] for i in range(0, len(queries), batch_size)]
    n_threads = default_threads() if n_threads is None else n_threads

    def run(batch):
      hits = self._top_k_batch(batch, k)
      if progress is not None:
        progress.update(len(batch))
      return hits

    return [h for hits in map_in_threads(run, batches, n_threads) for h in hits]

  def scores_for(self, query: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """BM25 scores of the given passages under `query`, bit-equal to what `top_k` computes."""
    terms, counts = np.unique(np.asarray(query, np.int64), return_counts=True)
    return self._scores(terms, counts, np.asarray(positions, np.int64))

  def _scores(self, terms: np.ndarray, counts: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Sums over terms in ascending id order, in float32: the order and precision of Q @ M."""
    acc = np.zeros(len(positions), np.float32)
    for t, c in zip(terms.tolist(), counts.tolist()):
      a, b = int(self.indptr[t]), int(self.indptr[t + 1])
      if a == b:
        continue
      postings = self.indices[a:b]
      j = np.minimum(np.searchsorted(postings, positions), b - a - 1)
      contrib = np.where(postings[j] == positions, self.data[a + j], np.float32(0))
      acc = acc + np.float32(c) * contrib.astype(np.float32)
    return acc

  def all_scores(self, query: np.ndarray) -> np.ndarray:
    """Dense scores of every passage (for checks and small indexes)."""
    return np.asarray((self.query_matrix([query]) @ self._csr).toarray()[0], np.float32)
