"""The KARD reranker at serving time: BM25 candidates of a new question, re-ordered.

The trained run is loaded through the reranker's own inference path (`reranker.stage.
load_reranker`, then `Reranker.rerank`), with its tables built once over every passage of the
index (the passage side is question-independent and cached on disk, so a restart is cheap). A new
question only needs its own WordPiece ids (and, for the "tail" layout, the frozen encoder's
bottom-layer states, computed at a fixed shape), added to the tables for the duration of the call.
Calls are serialised by the engine's index lock.
"""

from __future__ import annotations

import os

import numpy as np

from kard_jax.retrieval.scoring import Hits


class ServingReranker:
  """`rerank(question, candidates, k)` over a loaded index (one question at a time)."""

  def __init__(self, model_dir: str, index, cache_dir: str | None = None):
    from kard_jax.reranker import data, stage  # pylint: disable=import-outside-toplevel

    cache_dir = cache_dir or os.path.join(model_dir, "serve_cache")
    positions = np.arange(len(index), dtype=np.int64)
    self.config, self.reranker, self.step = stage.load_reranker(
        model_dir, index, positions, ["warm up"], cache_dir, show_progress=False)
    self.reranker.batch_size = 1
    self.tables = self.reranker.tables
    from kard_jax.models import bert_tokenizer  # pylint: disable=import-outside-toplevel

    self._tokenizer = bert_tokenizer.load_tokenizer(stage.encoder_folder(self.config.checkpoint))
    self._tokenize = data.tokenize
    self._bottom = None
    if self.tables.layout == "tail":
      bert_config, encoder_params, _ = stage.load_encoder(self.config.checkpoint)
      module = self.reranker.model.module
      self._bottom = stage._frozen_encoder(  # pylint: disable=protected-access
          bert_config, encoder_params, module.query_start_layer)

  def _add_question(self, question: str) -> None:
    Q = self.tables.max_query_length
    ids = self._tokenize(self._tokenizer, [question], Q)[0]
    self.tables.query_ids[question] = ids
    if self._bottom is not None:
      padded = np.zeros((1, Q), np.int32)
      mask = np.zeros((1, Q), np.int32)
      padded[0, :len(ids)], mask[0, :len(ids)] = ids, 1
      states = np.asarray(self._bottom(padded, mask))[0, :len(ids)]
      self.tables.query_states[question] = states.astype(
          next(iter(self.tables.query_states.values())).dtype)

  def rerank(self, question: str, candidates: Hits, k: int) -> Hits:
    added = question not in self.tables.query_ids
    if added:
      self._add_question(question)
    try:
      return self.reranker.rerank([question], [candidates], k)[0]
    finally:
      if added and question != "warm up":
        self.tables.query_ids.pop(question, None)
        if self.tables.query_states is not None:
          self.tables.query_states.pop(question, None)

  def warm_up(self, num_candidates: int) -> None:
    """Compiles the scoring path at every shape serving can meet: the candidates of a question
    (fewer when few passages share its terms) are padded up to a multiple of 32."""
    if self.tables.layout != "pairs":  # every passage's vectors now, not at a request's cost
      self.reranker.passage_vectors(self.tables.passage_ids.positions)
    total = min(num_candidates, len(self.tables.passage_ids.positions))
    for n in sorted({min(total, k) for k in range(32, total + 32, 32)}):
      positions = np.arange(n, dtype=np.int64)
      self.rerank("warm up question", (positions, np.zeros(n, np.float32)), 1)
