"""Inference: question -> BM25 top-N -> reranked top-k, with passage vectors computed once.

For late interaction the passage side is question-independent: every candidate's compressed token
vectors are computed once (from the frozen states through the trained compressor, or through the
trained encoder) and cached on disk, keyed by the run directory and checkpoint step; a question then
costs one encoder pass plus a MaxSim over its candidates. The cross-encoder has nothing to cache
and runs one encoder pass per (question, candidate) pair.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from kard_jax.reranker import data as data_lib
from kard_jax.reranker import scorer as scorer_lib
from kard_jax.reranker.data import Tables
from kard_jax.reranker.model import RerankerModel
from kard_jax.retrieval.scoring import Hits


class Reranker:
  """A trained scorer with its tables, ready to score candidate lists of questions."""

  def __init__(self, model: RerankerModel, params, tables: Tables, *, batch_size: int = 16,
               cache_dir: str | None = None, cache_tag: str = "", show_progress: bool = True):
    self.model, self.params, self.tables = model, params, tables
    self.batch_size = int(batch_size)
    self.cache_dir, self.cache_tag, self.show_progress = cache_dir, cache_tag, show_progress
    self._vectors: data_lib.TokenTable | None = None
    module = model.module
    if model.layout != "pairs":
      self._encode_query = jax.jit(functools.partial(module.apply, method="encode_query"))
      self._compress = jax.jit(functools.partial(module.apply, method="compress"))
      self._encode_passages = jax.jit(functools.partial(module.apply, method="encode_passages"))
    self._scores = jax.jit(model.scores)

  # --- late interaction ------------------------------------------------------------------------

  def passage_vectors(self, positions: np.ndarray) -> data_lib.TokenTable:
    """Compressed token vectors [L_i, D] (float16) of the given passages, cached on disk."""
    positions = np.unique(np.asarray(positions, np.int64))
    if self._vectors is not None and all(p in self._vectors for p in positions.tolist()):
      return self._vectors
    variables = {"params": self.params}
    if self.model.layout in ("states", "tail"):
      source = self.tables.passage_states
      fn = lambda s, m: self._compress(variables, s)  # noqa: E731
    else:
      source = self.tables.passage_ids
      fn = lambda i, m: self._encode_passages(variables, i, m)  # noqa: E731
    compute = lambda missing: data_lib.encode_table(  # noqa: E731
        data_lib.subset(source, missing), fn, batch_size=64,
        show_progress=self.show_progress, desc="passage vectors")
    parts = {"what": "reranker passage vectors", "tag": self.cache_tag,
             "layout": self.model.layout, "max_passage_length": self.tables.max_passage_length}
    self._vectors = data_lib.cached(self.cache_dir, parts, positions, compute)
    return self._vectors

  def _query_vectors(self, questions: Sequence[str]) -> tuple[jax.Array, np.ndarray]:
    ids, mask = self.tables.queries(questions)
    return self._encode_query({"params": self.params}, ids, mask), mask

  def score(self, questions: Sequence[str], candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Scores of each question's candidate positions (any number per question)."""
    from tqdm.auto import tqdm

    out: list[np.ndarray] = []
    if self.model.layout != "pairs":
      vectors = self.passage_vectors(np.concatenate([np.asarray(c, np.int64) for c in candidates])
                                     if candidates else np.zeros(0, np.int64))
    bar = tqdm(total=len(questions), desc="rerank", unit=" questions",
               disable=not self.show_progress, mininterval=2.0)
    for s in range(0, len(questions), self.batch_size):
      cands = [np.asarray(c, np.int64) for c in candidates[s:s + self.batch_size]]
      # Fixed batch rows and candidates rounded up to 32: few shapes, few compilations.
      qs = list(questions[s:s + self.batch_size]) + [""] * (self.batch_size - len(cands))
      K = -(-max([len(c) for c in cands] + [1]) // 32) * 32
      positions = np.zeros((len(qs), K), np.int64)
      valid = np.zeros((len(qs), K), np.int32)
      for i, c in enumerate(cands):
        positions[i, :len(c)], valid[i, :len(c)] = c, 1
      if self.model.layout == "pairs":
        batch = self.tables.pairs(qs, positions, valid)
        scores = np.asarray(self._scores(self.params, batch))
      else:
        q, q_mask = self._query_vectors(qs)
        p, p_mask = vectors.gather(positions, self.tables.max_passage_length, valid)
        scores = np.asarray(_maxsim(q, q_mask, p, p_mask))
      out += [scores[i, :len(c)] for i, c in enumerate(cands)]
      bar.update(len(cands))
    bar.close()
    return out

  def rerank(self, questions: Sequence[str], candidates: Sequence[Hits], top_k: int,
             bm25_weight: float = 0.0) -> list[Hits]:
    """Each question's candidates re-ordered by the scorer (ties: BM25 order), cut to top_k.

    `bm25_weight` > 0 ranks by fuse(scorer, BM25) instead (see `fuse`); 0 is KARD's reranker.
    """
    scores = self.score(questions, [c[0] for c in candidates])
    out = []
    for (pos, bm25), s in zip(candidates, scores):
      if bm25_weight:
        s = fuse(s, np.asarray(bm25, np.float32), bm25_weight)
      order = np.argsort(-s, kind="stable")[:top_k]
      out.append((np.asarray(pos, np.int64)[order], s[order].astype(np.float32)))
    return out


def fuse(scores: np.ndarray, bm25: np.ndarray, bm25_weight: float) -> np.ndarray:
  """z(scores) + bm25_weight * z(bm25), z standardising over one question's candidates: the two
  scales differ by orders of magnitude, and standardising keeps the weight meaningful. Keeps
  question BM25's exact-term precision (rare names) while the reranker adds what the rationale
  would have found."""
  z = lambda x: (x - x.mean()) / (x.std() + 1e-6)  # noqa: E731
  return (z(scores.astype(np.float64)) + bm25_weight * z(bm25.astype(np.float64))).astype(
      np.float32)


@jax.jit
def _maxsim(q, q_mask, p, p_mask):
  return scorer_lib.maxsim(q, q_mask > 0, p.astype(jnp.float32), p_mask > 0)
