"""KARD's training queries (PipelineConfig.rationale_query): what BM25 is asked for training
passages, and what the reranker imitates."""

from __future__ import annotations

import dataclasses

import pytest

from kard_jax.data.example import read_examples
from kard_jax.data.rationale import read_rationales
from kard_jax.data.synthetic import SyntheticConfig, write_benchmark
from kard_jax.pipeline import benchmark_stages as bs
from kard_jax.pipeline import config as config_lib


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
  root = tmp_path_factory.mktemp("queries")
  write_benchmark(SyntheticConfig(num_entities=20, num_validation=4, num_test=8,
                                  rationale_subject="pronoun", rationales_per_question=2), root)
  b = bs.Bench("synthetic", "synthetic", str(root / "view"))
  b.files = {"rationales/train.jsonl": str(root / "rationales" / "train.jsonl"),
             "examples/train.jsonl": str(root / "examples" / "train.jsonl")}
  return b


@pytest.mark.parametrize("mode", ["rationale", "question", "question+rationale"])
def test_training_queries(bench, mode):
  config = config_lib.PipelineConfig(rationale_query=mode)
  rationales = read_rationales(bench.files["rationales/train.jsonl"])
  questions = {ex.id: ex.question for ex in read_examples(bench.files["examples/train.jsonl"])}
  queries = bs.training_queries(bench, config)
  assert [(q.id, q.sample) for q in queries] == [(r.id, r.sample) for r in rationales]
  for q, r in zip(queries, rationales):
    want = {"rationale": r.rationale, "question": questions[r.id],
            "question+rationale": f"{questions[r.id]} {r.rationale}"}[mode]
    assert q.rationale == want
    assert dataclasses.replace(q, rationale=r.rationale) == r


def test_unknown_query_mode_is_rejected():
  with pytest.raises(ValueError, match="rationale_query"):
    config_lib.PipelineConfig(rationale_query="passage")
