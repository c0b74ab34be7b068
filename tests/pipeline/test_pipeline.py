"""A miniature synthetic benchmark through every method, end to end, twice.

The real gin files of gin_configs/synthetic/ run with bindings that shrink the world, the
students, the reranker and the step counts. Checked: every stage finished and its outputs are
well formed, each evaluation's accuracy equals a recount from its predictions file, the results
table lists every method, and a second run reuses every stage and reports the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from kard_jax.data.example import read_examples
from kard_jax.data.jsonl import iter_jsonl, read_jsonl
from kard_jax.data.rationale import read_rationales
from kard_jax.pipeline import config as config_lib
from kard_jax.pipeline import results, runner, stages

TINY_STUDENT = ["T5Config.d_model=32", "T5Config.num_heads=2", "T5Config.head_dim=16",
                "T5Config.d_ff=64", "TRAIN_STEPS=3", "WARMUP_STEPS=1", "BATCH_SIZE=8",
                "TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 48}"]


def make_tiny_bert(folder) -> str:
  """A random 1-layer BERT with MiniLM's WordPiece vocabulary, in Hugging Face's layout: the
  reranker's pipeline in seconds instead of MiniLM's minutes."""
  import shutil
  from safetensors.numpy import save_file
  from kard_jax.models import minilm

  source = minilm.packaged_minilm_dir()
  os.makedirs(folder, exist_ok=True)
  for name in ("vocab.txt", "tokenizer.json"):
    shutil.copy(os.path.join(source, name), os.path.join(folder, name))
  vocab = sum(1 for _ in open(os.path.join(source, "vocab.txt"), encoding="utf-8"))
  E, F, P = 32, 64, 128
  config = {"model_type": "bert", "vocab_size": vocab, "hidden_size": E,
            "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": F,
            "max_position_embeddings": P, "type_vocab_size": 2, "hidden_act": "gelu",
            "layer_norm_eps": 1e-12, "pad_token_id": 0}
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(config, f)
  rng = np.random.default_rng(0)
  w = lambda *shape: (0.05 * rng.standard_normal(shape)).astype(np.float32)
  ones, zeros = (lambda n: np.ones(n, np.float32)), (lambda n: np.zeros(n, np.float32))
  t = {"embeddings.word_embeddings.weight": w(vocab, E),
       "embeddings.position_embeddings.weight": w(P, E),
       "embeddings.token_type_embeddings.weight": w(2, E),
       "embeddings.LayerNorm.weight": ones(E), "embeddings.LayerNorm.bias": zeros(E)}
  layer = "encoder.layer.0"
  for name in ("query", "key", "value"):
    t[f"{layer}.attention.self.{name}.weight"], t[f"{layer}.attention.self.{name}.bias"] = (
        w(E, E), zeros(E))
  t[f"{layer}.attention.output.dense.weight"] = w(E, E)
  t[f"{layer}.attention.output.dense.bias"] = zeros(E)
  t[f"{layer}.attention.output.LayerNorm.weight"] = ones(E)
  t[f"{layer}.attention.output.LayerNorm.bias"] = zeros(E)
  t[f"{layer}.intermediate.dense.weight"], t[f"{layer}.intermediate.dense.bias"] = w(F, E), zeros(F)
  t[f"{layer}.output.dense.weight"], t[f"{layer}.output.dense.bias"] = w(E, F), zeros(E)
  t[f"{layer}.output.LayerNorm.weight"], t[f"{layer}.output.LayerNorm.bias"] = ones(E), zeros(E)
  save_file(t, os.path.join(folder, "model.safetensors"))
  return folder


def mini_config(results_dir: str, bert_dir: str) -> config_lib.PipelineConfig:
  return config_lib.PipelineConfig(
      benchmark="synthetic",
      synthetic={"num_entities": 24, "num_validation": 8, "num_test": 16,
                 "rationales_per_question": 2, "train_questions_per_entity": 1},
      teacher_predictions="oracle", vocab_size=200, num_candidates=6, rationale_k=2,
      num_passages=2,
      reranker_bindings=("TRAIN_STEPS=2", "WARMUP_STEPS=1", "BATCH_SIZE=8",
                         f"RerankerConfig.checkpoint={bert_dir!r}",
                         "RerankerConfig.max_query_length=24",
                         "RerankerConfig.max_passage_length=48",
                         "ScorerConfig.compression_dim=16",
                         "CandidateConfig.rationale_top=4", "CandidateConfig.question_top=4"),
      methods=config_lib.DEFAULT_METHODS, train_bindings=tuple(TINY_STUDENT),
      self_consistency=2, max_decode_length=24, eval_batch_size=16,
      sweep_entities=(16,), sweep_methods=("kard_bm25",), results_dir=results_dir,
      seeds=(0, 1), seed_methods=("answer_only",))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
  import jax
  root = tmp_path_factory.mktemp("pipeline")
  jax.config.update("jax_compilation_cache_dir", str(root / "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  config = mini_config(str(root / "results"), make_tiny_bert(str(root / "tiny_bert")))
  outcome = runner.run(config, str(root / "work"), command="pytest mini pipeline")
  return root, config, outcome


def _stage_dirs(outcome, family: str) -> list[str]:
  return [r["dir"] for r in outcome.stages if r["stage"].split("/")[1] == family]


def test_every_stage_finished_with_a_manifest(first_run):
  root, _, outcome = first_run
  names = [r["stage"] for r in outcome.stages]
  for family in ("data", "teacher", "vocab", "index", "retrieval", "reranker", "train", "eval",
                 "scicot_rationales", "teacher_predictions"):
    assert any(n.split("/")[1] == family for n in names), family
  assert any(n.startswith("synthetic_e16/") for n in names), "the sweep variant ran"
  for record in outcome.stages:
    manifest = stages.read_manifest(record["dir"])
    assert manifest is not None and manifest["stage"] == record["stage"]
    assert manifest["content_hash"] == stages.hash_tree(record["dir"])


def test_benchmark_outputs_are_well_formed(first_run):
  root, _, outcome = first_run
  view = root / "work" / "data" / "synthetic"
  splits = {s: read_examples(view / "examples" / f"{s}.jsonl")
            for s in ("train", "validation", "test")}
  assert all(splits.values()) and len(splits["test"]) == 16
  rationales = read_rationales(view / "rationales" / "train.jsonl")
  assert {r.id for r in rationales} <= {ex.id for ex in splits["train"]}
  import sentencepiece as spm
  sp = spm.SentencePieceProcessor(model_file=str(view / "spiece.model"))
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2)
  passages = {p["id"] for p in read_jsonl(view / "kb" / "passages.jsonl")}
  for name, n in (("rationale_train", len(rationales)), ("question_test", 16),
                  ("reranked_test", 16)):
    lines = read_jsonl(view / "retrieval" / f"{name}.jsonl")
    assert len(lines) == n, name
    for line in lines:
      assert line["passages"] and {p["id"] for p in line["passages"]} <= passages
      scores = [p["score"] for p in line["passages"]]
      if name != "reranked_test":
        assert scores == sorted(scores, reverse=True)
  scicot = read_rationales(view / "rationales" / "scicot_test.jsonl")
  assert {r.id for r in scicot} == {ex.id for ex in splits["test"]}
  for model_dir in _stage_dirs(outcome, "train"):
    assert any(n.startswith("checkpoint_") for n in os.listdir(os.path.join(model_dir, "model")))


def test_accuracy_equals_a_recount_of_the_predictions(first_run):
  root, _, outcome = first_run
  evals = sorted(set(_stage_dirs(outcome, "eval")))
  assert len(evals) == 11  # 6 students, 3 with self-consistency, 1 in the sweep, 1 more seed
  for d in evals:
    metrics = json.loads(open(os.path.join(d, "metrics.json")).read())
    lines = [obj for _, obj in iter_jsonl(os.path.join(d, "predictions.jsonl"))]
    assert len(lines) == metrics["num_examples"]
    for line in lines:
      assert set(line) >= {"id", "rationales", "answers", "prediction", "gold", "correct"}
      assert len(line["rationales"]) == len(line["answers"]) == len(line["scores"])
      assert line["correct"] == (line["prediction"] == line["gold"])
    manual = np.mean([line["prediction"] == line["gold"] for line in lines])
    assert metrics["accuracy"] == pytest.approx(manual)
    examples = read_examples(root / "work" / "data" / d.split("/stages/")[1].split("/")[0]
                             / "examples" / "test.jsonl")
    counted = results.recount(os.path.join(d, "predictions.jsonl"), examples)
    assert counted["accuracy"]["all"] == pytest.approx(100 * metrics["accuracy"])


def test_results_table_lists_every_method(first_run):
  root, config, outcome = first_run
  res = outcome.results
  methods = [r["method"] for r in res["rows"]]
  assert set(methods) == set(config_lib.DEFAULT_METHODS)
  assert sum(r["decoding"].startswith("self-consistency") for r in res["rows"]) == 3
  teacher = next(r for r in res["rows"] if r["method"] == "teacher")
  assert teacher["accuracy"]["all"] == 100.0  # the synthetic oracle
  for row in res["rows"]:
    assert set(row["accuracy"]) == {"all", "seen", "unseen"}
  sweep = res["sweep"]["rows"]
  assert {(r["num_entities"], r["method"]) for r in sweep} == {
      (n, m) for n in (16, 24) for m in config.sweep_methods}
  saved = json.loads((root / "results" / "synthetic.json").read_text())
  assert saved["rows"] == json.loads(json.dumps(res["rows"]))
  md = (root / "results" / "synthetic.md").read_text()
  assert "KARD (reranker)" in md and "Sci-CoT" in md and "pytest mini pipeline" in md
  assert (root / "results" / "synthetic.png").read_bytes().startswith(b"\x89PNG")


def test_second_run_reuses_every_stage(first_run):
  root, config, outcome = first_run
  again = runner.run(config, str(root / "work"), command="pytest mini pipeline")
  assert [r["status"] for r in again.stages] == ["reused"] * len(again.stages)
  assert [r["dir"] for r in again.stages] == [r["dir"] for r in outcome.stages]
  assert again.results["rows"] == outcome.results["rows"]
  # A new sampling seed re-runs only the self-consistency evaluations.
  changed = runner.run(dataclasses.replace(config, eval_seed=1), str(root / "work"), write=False)
  ran = {r["stage"] for r in changed.stages if r["status"] == "ran"}
  assert ran and all("_sc" in s for s in ran)


def test_seeds_train_separate_students_and_rows_aggregate_them(first_run):
  """answer_only trains with seeds 0 and 1 (its row: their mean and t-interval, both seeds'
  numbers kept); every other method with seed 0 only (its row: Wilson's interval)."""
  from kard_jax.report import intervals
  root, config, outcome = first_run
  trained = [r for r in outcome.stages if "/train/answer_only/" in r["stage"]]
  assert sorted(r["stage"].rsplit("/", 1)[1] for r in trained) == ["s0", "s1"]
  assert len({r["dir"] for r in trained}) == 2
  for row in outcome.results["rows"]:
    seeds = [s["seed"] for s in row["seeds"]]
    if row["method"] == "teacher":
      continue
    assert seeds == ([0, 1] if row["method"] == "answer_only" else [0])
    for g, mean in row["accuracy"].items():
      values = [s["accuracy"][g] for s in row["seeds"]]
      assert mean == pytest.approx(sum(values) / len(values))
      if len(values) > 1:
        assert row["interval"][g] == pytest.approx(intervals.t_interval(values), abs=0.01)
      else:
        assert row["interval"][g] == row["seeds"][0]["wilson"][g]
  saved = json.loads((root / "results" / "synthetic.json").read_text())
  from kard_jax.report import stamp
  assert stamp.missing_stamp_fields(saved) == []
