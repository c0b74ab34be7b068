"""bench/retrieval_pyserini.py's comparison code on fixtures (the Lucene side needs Java and a
1M-passage corpus, so it is not run in CI: `./run.sh bench retrieval_pyserini` runs it)."""

import importlib.util
import json

import numpy as np
import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def bench():
  spec = importlib.util.spec_from_file_location("retrieval_pyserini",
                                                REPO_ROOT / "bench" / "retrieval_pyserini.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_overlap_counts_shared_passages_per_query(bench):
  ours = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10], []]
  theirs = [[4, 3, 2, 1], [5, 6, 7, 99], [10, 9], []]
  stats = bench.overlap_stats(ours, theirs, k=4)
  # 4/4, 3/4, 2/2, and an empty pair agrees trivially
  assert stats["overlap"] == pytest.approx((1 + 0.75 + 1 + 1) / 4)
  assert stats["identical_sets"] == pytest.approx(3 / 4)  # the order inside the top-k is ignored
  assert stats["same_first"] == pytest.approx(1 / 4)  # only query 2 starts with the same passage


def test_overlap_cuts_at_k_and_penalises_a_short_list(bench):
  stats = bench.overlap_stats([[1, 2, 3, 4, 5]], [[1, 2, 9, 4, 5]], k=2)
  assert stats == {"overlap": 1.0, "identical_sets": 1.0, "same_first": 1.0}
  short = bench.overlap_stats([[1, 2]], [[1, 2, 3, 4]], k=4)
  assert short["overlap"] == pytest.approx(0.5) and short["identical_sets"] == 0.0
  with pytest.raises(ValueError):
    bench.overlap_stats([[1]], [[1], [2]], k=1)


def test_score_gaps_measure_distance_below_our_cut(bench):
  ours_top = [[10.0, 8.0, 5.0], [4.0, 2.0]]
  extra = [[5.0, 4.0], []]  # a tie at our cut, and a passage 20% below it; query 2 agrees
  g = bench.score_gaps(ours_top, extra)
  assert g["passages"] == 2
  assert g["max"] == pytest.approx(0.2) and g["median"] == pytest.approx(0.1)
  assert bench.score_gaps(ours_top, [[], []]) == {"passages": 0, "median": 0.0, "p95": 0.0,
                                                   "max": 0.0}


def test_lucene_length_matches_lucene_smallfloat(bench):
  # byte4ToInt(intToByte4(n)) as printed by Lucene 10's org.apache.lucene.util.SmallFloat (the
  # anserini 1.7.1 jar Pyserini 1.6.0 ships).
  lucene = {0: 0, 23: 23, 24: 24, 39: 39, 40: 40, 41: 40, 55: 54, 56: 56, 59: 56, 87: 84, 88: 88,
            100: 96, 151: 144, 152: 152}
  assert {n: bench.lucene_length(n) for n in lucene} == lucene
  lengths = np.arange(1, 2000)
  decoded = np.array([bench.lucene_length(int(n)) for n in lengths])
  assert np.all(decoded <= lengths) and np.all(np.diff(decoded) >= 0)  # rounds down, monotone


def test_bag_text_holds_each_stem_tf_times(bench):
  stems = ["", "cat", "sat", "mat"]
  text = bench.bag_text(stems, np.array([1, 3, 2]), np.array([2, 1, 3]))
  assert sorted(text.split()) == sorted(["cat", "cat", "mat", "sat", "sat", "sat"])


def test_lucene_docs_carry_our_tokens(bench, tmp_path):
  """The pre-tokenised Lucene input holds exactly the terms and counts our index holds."""
  from kard_jax.retrieval.bm25_index import build_index
  from kard_jax.retrieval.passages import Passage, write_passages

  texts = ["The cats are sitting on the mats, and the cat sat.", "Running runners ran a run",
           "x y z", "Of the people, by the people, for the people"]
  passages = tmp_path / "passages.jsonl"
  write_passages(str(passages), (Passage(f"p{i}", "", t) for i, t in enumerate(texts)))
  tok, raw = tmp_path / "tok.jsonl", tmp_path / "raw.jsonl"
  bench.write_lucene_docs(str(passages), len(texts), str(tok), str(raw))
  docs = [json.loads(line) for line in tok.read_text().splitlines()]
  assert [d["id"] for d in docs] == ["p0", "p1", "p2", "p3"]
  assert [json.loads(line)["contents"] for line in raw.read_text().splitlines()] == texts
  index = build_index((Passage(f"p{i}", "", t) for i, t in enumerate(texts)),
                      str(tmp_path / "index"), show_progress=False)
  inverse = {v: k for k, v in index.tokenizer.vocab.items()}
  matrix = index.matrix
  for i, d in enumerate(docs):
    ours = {}
    for term in range(matrix.num_terms):
      a, b = int(matrix.indptr[term]), int(matrix.indptr[term + 1])
      if i in matrix.indices[a:b].tolist():
        ours[inverse[term]] = None
    assert set(d["contents"].split()) == set(ours) - {""}, (i, d["contents"])
  assert sorted(docs[0]["contents"].split()) == ["cat", "cat", "mat", "sat", "sit"]
  assert docs[2]["contents"] == ""  # single letters are no words; ours gives it the empty token
  index.close()
