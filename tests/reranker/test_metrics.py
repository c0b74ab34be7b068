"""Evaluation helpers, score fusion, the head learning rate and the markdown report."""

import numpy as np
import optax

from kard_jax.reranker import inference as inference_lib
from kard_jax.reranker import metrics as metrics_lib
from kard_jax.reranker import model as model_lib
from kard_jax.report import reranker_tables as report


def test_kard_accuracy_counts_ties_against_the_scorer():
  scores = [np.array([3.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]),
            np.array([5.0, 9.0, 1.0, 0.0])]
  assert [metrics_lib.rank_of_first(s) for s in scores] == [0, 2, 2, 1]
  acc = metrics_lib.kard_accuracy(scores, ks=(1, 2, 3))
  assert acc == {"top1": 0.25, "top2": 0.5, "top3": 1.0}


def test_gold_joins_by_question_text_then_id():
  from kard_jax.data.example import Choice, Example
  from kard_jax.retrieval.gold import GoldQuery

  examples = [Example("a", "Is the  Sky blue?", (Choice("A", "yes"), Choice("B", "no")), "A"),
              Example("b", "Other?", (Choice("A", "yes"), Choice("B", "no")), "B"),
              Example("c", "Unknown?", (Choice("A", "yes"), Choice("B", "no")), "B")]
  gold = [GoldQuery("x1", "is the sky blue?", frozenset({"p1"}), (), 1),
          GoldQuery("b", "different text", frozenset({"p2"}))]
  assert metrics_lib.gold_for_examples(examples, gold) == [
      (frozenset({"p1"}), 1), (frozenset({"p2"}), 0), (frozenset(), 0)]


def test_fusion_standardises_both_scores():
  scores = np.array([1000.0, 1010.0, 990.0])
  bm25 = np.array([3.0, 1.0, 2.0])
  np.testing.assert_allclose(inference_lib.fuse(scores, bm25, 0.0),
                             (scores - scores.mean()) / scores.std(), rtol=1e-5, atol=1e-5)
  fused = inference_lib.fuse(scores, bm25, 1.0)
  z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
  np.testing.assert_allclose(fused, z(scores) + z(bm25), rtol=1e-5, atol=1e-5)
  # A large BM25 weight hands the order to BM25.
  assert np.argsort(-inference_lib.fuse(scores, bm25, 100.0)).tolist() == [0, 2, 1]


def test_head_learns_faster_by_the_multiplier():
  params = {"encoder": {"w": np.ones(3, np.float32)}, "compressor": {"w": np.ones(3, np.float32)}}
  grads = {"encoder": {"w": np.full(3, 0.5, np.float32)},
           "compressor": {"w": np.full(3, 0.5, np.float32)}}
  tx = model_lib.adamw_with_head(head_multiplier=10.0, weight_decay=0.0)(
      optax.constant_schedule(1e-3))
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["encoder"]["w"], -1e-3, rtol=1e-3)
  np.testing.assert_allclose(updates["compressor"]["w"], -1e-2, rtol=1e-3)


def test_report_renders_every_table():
  row = lambda r5: {"n": 10, "recall@1": 0.1, "recall@5": r5, "recall@10": 0.6}  # noqa: E731
  result = {
      "title": "Toy", "split": "validation", "questions": 12, "top_n": 50, "fusion_weight": 0.5,
      "recall": {"all": {"question_bm25": row(0.3), "reranker": row(0.4),
                         "reranker_bm25": row(0.45)},
                 "with_rationale": {"question_bm25": row(0.3), "reranker": row(0.4),
                                    "rationale_bm25": row(0.5)}},
      "dev": {"questions": 3, "recall": {"with_rationale": {"question_bm25": row(0.2),
                                                            "reranker": row(0.3),
                                                            "rationale_bm25": row(0.9)}},
              "kard_accuracy": {"n": 9, "question_bm25": {"top1": 0.5, "top3": 0.7, "top5": 0.9},
                                "reranker": {"top1": 0.6, "top3": 0.8, "top5": 1.0}}},
      "commands": [{"command": "kard rerank train ...", "wall_s": 12.3}], "machine": "2 cores"}
  text = report.render(result)
  assert text.startswith("### Toy")
  assert "| recall@1 | recall@5 | recall@10 |" in text  # numeric order of the cut-offs
  assert "| reranker (question BM25 top-50, reranked) | 10 | 0.100 | 0.400 | 0.600 |" in text
  assert "weight 0.5" in text and "rationale BM25 (ceiling" in text
  assert "| reranker | 9 | 0.600 | 0.800 | 1.000 |" in text
  assert "kard rerank train ...    # 12 s" in text
