"""Batched top-k and re-scoring: against dense scores and bm25s's own retrieval."""

import numpy as np
import pytest

from kard_jax.retrieval.bm25_index import load_index
from kard_jax.retrieval.scoring import select_top_k


def test_select_top_k_orders_by_score_then_position():
  pos = np.array([5, 3, 9, 1, 7])
  scores = np.array([1.0, 2.0, 2.0, 0.5, 2.0], np.float32)
  p, s = select_top_k(pos, scores, 2)
  assert p.tolist() == [3, 7] and s.tolist() == [2.0, 2.0]
  assert select_top_k(pos, scores, 10)[0].tolist() == [3, 7, 9, 5, 1]


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_top_k_equals_brute_force_over_dense_scores(index_dir, queries, batch_size):
  index = load_index(index_dir)
  encoded = index.encode(queries)
  hits = index.matrix.top_k(encoded, 7, n_threads=2, batch_size=batch_size)
  for q, (pos, scores) in zip(encoded, hits):
    dense = index.matrix.all_scores(q)
    matched = np.flatnonzero(dense > 0)
    want = matched[np.lexsort((matched, -dense[matched]))][:7]
    np.testing.assert_array_equal(pos, want)
    np.testing.assert_array_equal(scores, dense[want])
  assert len(hits[-2][0]) == 0 and len(hits[-1][0]) == 0  # no known / only stop words
  index.close()


def test_scores_agree_with_bm25s_get_scores_and_retrieve(index_dir, queries):
  index = load_index(index_dir)
  ref = index.retriever
  for text, (pos, scores) in zip(queries, index.search(queries, 10)):
    terms = index.tokenizer.decode(index.tokenizer.encode_query(text))
    if not terms:
      continue
    want = ref.get_scores(terms)
    np.testing.assert_allclose(index.matrix.all_scores(index.tokenizer.encode_query(text)), want,
                               rtol=2e-6, atol=1e-6)
    docs, ref_scores = ref.retrieve([terms], k=len(pos), show_progress=False,
                                    backend_selection="numpy")
    np.testing.assert_allclose(scores, ref_scores[0], rtol=2e-6)  # same top scores (ties aside)
  index.close()


def test_rescoring_equals_the_scores_retrieval_gives(index_dir, queries):
  index = load_index(index_dir)
  hits = index.search(queries, 25)
  for i, (text, (pos, scores)) in enumerate(zip(queries, hits)):
    np.testing.assert_array_equal(index.score(text, pos), scores)  # bit-equal
    other = queries[(i + 1) % len(queries)]  # another query over this candidate list
    dense = index.matrix.all_scores(index.tokenizer.encode_query(other))
    np.testing.assert_array_equal(index.score(other, pos), dense[pos])
  index.close()

