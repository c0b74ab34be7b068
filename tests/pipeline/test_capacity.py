"""gin_configs/synthetic/pipeline_capacity.gin in miniature: the committed configuration, with
tiny worlds, students and reranker, end to end. Checked: every knowledge-base size and method is
in the results file with seen and unseen accuracies and intervals, the reranker's recall@1 sits
beside question BM25's at every size, and the file is stamped."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import gin
import pytest

from kard_jax.cli.commands.pipeline import read_stage_configs
from kard_jax.pipeline import config as config_lib
from kard_jax.pipeline import runner
from kard_jax.report import stamp
from tests.pipeline.test_pipeline import TINY_STUDENT, make_tiny_bert

CAPACITY_GIN = (pathlib.Path(__file__).resolve().parents[2] / "gin_configs" / "synthetic"
                / "pipeline_capacity.gin")
TINY_SIZES = (24, 28, 32, 36)


def tiny_capacity_config(results_dir: str, bert_dir: str) -> config_lib.PipelineConfig:
  gin.clear_config()
  gin.parse_config_files_and_bindings([str(CAPACITY_GIN)], [])
  committed = config_lib.PipelineConfig()
  gin.clear_config()
  assert len(committed.sweep_entities) >= 4
  synthetic = dict(committed.synthetic, num_entities=TINY_SIZES[0], num_validation=4,
                   num_test=16)
  return dataclasses.replace(
      committed, synthetic=synthetic, sweep_entities=TINY_SIZES, vocab_size=200,
      num_candidates=6, train_bindings=tuple(TINY_STUDENT), max_decode_length=24,
      eval_batch_size=16, results_dir=results_dir, seeds=committed.seeds[:1],
      reranker_bindings=("TRAIN_STEPS=2", "WARMUP_STEPS=1", "BATCH_SIZE=8",
                         f"RerankerConfig.checkpoint={bert_dir!r}",
                         "RerankerConfig.max_query_length=24",
                         "RerankerConfig.max_passage_length=48",
                         "ScorerConfig.compression_dim=16",
                         "CandidateConfig.rationale_top=4", "CandidateConfig.question_top=4"))


@pytest.fixture(scope="module")
def capacity_run(tmp_path_factory):
  import jax
  root = tmp_path_factory.mktemp("capacity")
  jax.config.update("jax_compilation_cache_dir", str(root / "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  config = tiny_capacity_config(str(root / "results"), make_tiny_bert(str(root / "tiny_bert")))
  outcome = runner.run(config, str(root / "work"), read_stage_configs(config),
                       command="pytest mini capacity")
  return root, config, outcome


def test_every_size_and_method_has_seen_and_unseen_accuracy(capacity_run):
  root, config, outcome = capacity_run
  saved = json.loads((root / "results" / f"{config.name}.json").read_text())
  assert config.name == "synthetic_capacity"
  rows = saved["sweep"]["rows"]
  assert {(r["num_entities"], r["method"]) for r in rows} == {
      (n, m) for n in TINY_SIZES for m in config.sweep_methods}
  assert {"kard_bm25", "kard_rerank"} <= set(config.sweep_methods)
  for r in rows:
    for group in ("seen", "unseen"):
      assert 0.0 <= r["accuracy"][group] <= 100.0
      lo, hi = r["interval"][group]
      assert lo <= r["accuracy"][group] <= hi
      assert r["counts"][group] > 0
    assert [s["seed"] for s in r["seeds"]] == list(config.seeds_for(r["method"]))
  assert saved["sweep"]["groups"] == ["unseen", "seen"]
  assert sorted(saved["sweep"]["retrieval"], key=int) == [str(n) for n in TINY_SIZES]
  for recall in saved["sweep"]["retrieval"].values():
    assert set(recall) == {"question BM25", "reranker"}
  assert stamp.missing_stamp_fields(saved) == []
  assert saved["stamp"]["command"] == "pytest mini capacity"
  md = (root / "results" / f"{config.name}.md").read_text()
  assert "### seen accuracy (%) against knowledge-base size" in md
  assert "### unseen accuracy (%) against knowledge-base size" in md
  assert "recall@1 of the subject's passage" in md
  assert (root / "results" / f"{config.name}.png").read_bytes().startswith(b"\x89PNG")


def test_seen_questions_repeat_training_questions(capacity_run):
  root, _, _ = capacity_run
  from kard_jax.data.example import read_examples
  view = root / "work" / "data" / "synthetic"
  trained = {(ex.extra["subject"], ex.extra["relation"])
             for ex in read_examples(view / "examples" / "train.jsonl")}
  seen = [ex for ex in read_examples(view / "examples" / "test.jsonl")
          if ex.extra["entity_split"] == "seen"]
  assert seen and all((ex.extra["subject"], ex.extra["relation"]) in trained for ex in seen)
