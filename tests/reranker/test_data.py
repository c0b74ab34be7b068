"""Candidate lists and targets from a real BM25 index; deterministic sampling; the dev hold-out."""

import numpy as np
import pytest

from kard_jax.data.rationale import read_rationales
from kard_jax.data.example import read_examples
from kard_jax.reranker import data as data_lib

CFG = data_lib.CandidateConfig(rationale_top=6, question_top=6, rationale_samples=2,
                               question_samples=2, eval_candidates=5)


@pytest.fixture(scope="module")
def built(tiny_data):
  data_dir, index = tiny_data
  examples = {e.id: e for e in read_examples(f"{data_dir}/examples/train.jsonl")}
  pairs = [data_lib.Pair(r.id, r.sample, examples[r.id].question, r.rationale)
           for r in read_rationales(f"{data_dir}/rationales/train.jsonl")]
  return index, pairs, data_lib.build_examples(index, pairs, CFG, show_progress=False)


def test_lists_are_bm25_top_n_and_targets_score_under_the_rationale(built):
  index, pairs, examples = built
  assert len(examples) == len(pairs)
  for pair, ex in zip(pairs, examples):
    r_pos, r_scores = index.search([pair.rationale], CFG.rationale_top)[0]
    q_pos, _ = index.search([pair.question], CFG.question_top)[0]
    np.testing.assert_array_equal(ex.rationale_positions, r_pos)
    np.testing.assert_array_equal(ex.question_positions, q_pos)
    np.testing.assert_array_equal(ex.rationale_targets, r_scores)
    # Every target is the dense BM25 score of that passage with the rationale as the query.
    dense = index.matrix.all_scores(index.tokenizer.encode_query(pair.rationale))
    np.testing.assert_allclose(ex.question_targets, dense[ex.question_positions], rtol=1e-6)
    np.testing.assert_allclose(ex.rationale_targets, dense[ex.rationale_positions], rtol=1e-6)


def test_training_samples_are_distinct_and_reproducible(built):
  _, _, examples = built
  for i, ex in enumerate(examples):
    a = data_lib.sample_train(ex, CFG, data_lib.rng_for(0, 2, i))
    b = data_lib.sample_train(ex, CFG, data_lib.rng_for(0, 2, i))
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)
    positions, targets, mask = a
    real = positions[mask > 0]
    assert len(real) == len(set(real.tolist())) == CFG.num_train_candidates
    # At most `rationale_samples` come from the rationale's list unless the question's ran short.
    from_q = [p for p in real.tolist() if p in set(ex.question_positions.tolist())]
    want = min(CFG.question_samples, len(ex.question_positions)) - CFG.rationale_samples
    assert len(from_q) >= want
    lookup = dict(zip(ex.rationale_positions.tolist(), ex.rationale_targets.tolist()))
    lookup.update({p: t for p, t in zip(ex.question_positions.tolist(),
                                        ex.question_targets.tolist()) if p not in lookup})
    np.testing.assert_allclose(targets[mask > 0], [lookup[p] for p in real.tolist()], rtol=1e-6)


def test_short_lists_are_masked():
  ex = data_lib.RerankExample("x", 0, "q", np.array([3, 4]), np.array([2.0, 1.0], np.float32),
                              np.array([4]), np.array([1.0], np.float32))
  positions, targets, mask = data_lib.sample_train(ex, CFG, np.random.default_rng(0))
  assert mask.tolist() == [1, 1, 0, 0]
  assert sorted(positions[:2].tolist()) == [3, 4]


def test_eval_lists_put_the_rationale_top_passage_first(built):
  _, _, examples = built
  for i, ex in enumerate(examples):
    positions, targets, mask = data_lib.eval_candidates(ex, CFG, data_lib.rng_for(0, 1, i))
    real = positions[mask > 0]
    assert real[0] == ex.rationale_positions[0]
    assert len(real) == len(set(real.tolist()))
    assert np.argmax(np.where(mask > 0, targets, -np.inf)) == 0


def test_holdout_keeps_all_rationales_of_a_question_together():
  pairs = [data_lib.Pair(f"q{i}", s, f"question {i}", f"r{s}") for i in range(40) for s in range(3)]
  train, dev = data_lib.holdout(pairs, 0.1, seed=0)
  assert len(dev) == 12 and len(train) == 108
  assert not {p.example_id for p in dev} & {p.example_id for p in train}
  assert data_lib.holdout(pairs, 0.1, seed=0) == (train, dev)
  assert data_lib.holdout(pairs, 0.1, seed=1)[1] != dev
