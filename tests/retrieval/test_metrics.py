"""recall@k / hit@k by hand, gold-evidence loaders, and evaluation end to end on a toy KB."""

import json

import pytest

from kard_jax.retrieval.bm25_index import build_index
from kard_jax.retrieval.gold import (GoldQuery, RationaleQuery, join_rationales, load_rationales,
                                     obqa_gold, strategyqa_gold, text_index)
from kard_jax.retrieval.ingest import IngestConfig, iter_kb
from kard_jax.retrieval.metrics import evaluate, recall_at_k
from kard_jax.retrieval.passages import Passage


def test_recall_and_hit_by_hand():
  retrieved = [["a", "x", "b", "y"], ["y", "z", "c"], ["q"]]
  gold = [{"a", "b"}, {"c"}, set()]
  got = recall_at_k(retrieved, gold, ks=(1, 2, 3), missing=[1, 0, 0])
  # query 1: gold {a, b} plus one gold text absent from the KB -> denominator 3.
  assert got["n"] == 2  # the query without gold is skipped
  assert got["recall@1"] == pytest.approx((1 / 3 + 0) / 2)
  assert got["recall@2"] == pytest.approx((1 / 3 + 0) / 2)
  assert got["recall@3"] == pytest.approx((2 / 3 + 1) / 2)
  assert got["hit@1"] == 0.5 and got["hit@2"] == 0.5 and got["hit@3"] == 1.0


def test_evaluate_question_and_rationale_queries_on_a_toy_kb(tmp_path):
  kb = [Passage("sun", "", "The sun is a star that gives light and heat."),
        Passage("bee", "", "A bee is a pollinating animal."),
        Passage("moon", "", "The moon orbits the earth and reflects light."),
        Passage("iron", "", "Iron is a metal that conducts electricity.")]
  index = build_index(kb, tmp_path / "i", show_progress=False)
  queries = [GoldQuery("q1", "What pollinates flowers, a bee?", frozenset({"bee"})),
             GoldQuery("q2", "Which metal conducts?", frozenset({"iron"}), ("copper", "wood")),
             GoldQuery("q3", "What gives heat?", frozenset({"sun", "moon"}))]
  rationales = [RationaleQuery("q3", 0,
                               "The moon reflects light of the sun, a star that gives heat."),
                RationaleQuery("q3", 1, "Iron conducts electricity."),
                RationaleQuery("zz", 0, "unrelated")]
  rows = evaluate(index, queries, kinds=("question", "rationale"), rationales=rationales, ks=(1, 2))
  q, r = rows
  # q1 -> bee first; q2 -> iron first; q3 "gives heat" -> sun first, moon not in the top 2.
  assert q["n"] == 3 and q["recall@1"] == pytest.approx((1 + 1 + 0.5) / 3)
  assert q["recall@2"] == pytest.approx((1 + 1 + 0.5) / 3) and q["hit@1"] == 1.0
  # Rationale 0 finds sun and moon, rationale 1 neither; the unmatched one is dropped.
  assert r["n"] == 2 and r["n_examples"] == 1
  assert r["recall@2"] == pytest.approx(0.5) and r["hit@1"] == pytest.approx(0.5)
  only = evaluate(index, queries, kinds=("question",), rationales=rationales, ks=(1,),
                  only_with_rationales=True)[0]
  assert only["n"] == 1 and only["recall@1"] == pytest.approx(0.5)
  index.close()


def test_rationale_files_and_join(tmp_path):
  raw = tmp_path / "raw.jsonl"
  raw.write_text("\n".join(json.dumps({"qid": "x", "question": q, "rationale": r}) for q, r in
                           [("Is it?", "r0"), ("Is it?", "r1"), ("Other?", "r2")]) + "\n")
  got = load_rationales(str(raw))
  assert [(r.id, r.sample) for r in got] == [("x", 0), ("x", 1), ("x", 2)]
  queries = [GoldQuery("g1", "is  IT?", frozenset({"p"}))]
  assert [r.text for _, r in join_rationales(queries, got)] == ["r0", "r1"]
  ours = tmp_path / "ours.jsonl"
  ours.write_text(json.dumps({"id": "g1", "sample": 4, "rationale": "r"}) + "\n")
  assert join_rationales(queries, load_rationales(str(ours)))[0][1].sample == 4


def test_real_gold_evidence_matches_the_real_knowledge_bases(shared_data):
  facts = list(iter_kb(str(shared_data / "obqa" / "openbook.txt"), show_progress=False))
  assert len(facts) == 1326
  obqa = obqa_gold([str(shared_data / "obqa" / "dev.jsonl")], text_index(facts))
  assert len(obqa) == 500 and all(len(q.gold) == 1 and q.missing == 0 for q in obqa)
  kb = iter_kb(str(shared_data / "strategyqa" / "wiki_sentence_kb.jsonl"),
               config=IngestConfig(window=None), show_progress=False)
  sqa = strategyqa_gold([str(shared_data / "strategyqa" / "golden_sentences_dev.json")],
                        text_index(kb))
  assert len(sqa) == 227 and sum(q.missing for q in sqa) == 0
  assert sum(len(q.gold) for q in sqa) >= 400
