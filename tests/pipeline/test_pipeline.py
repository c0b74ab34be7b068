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

import gin
import numpy as np
import pytest

from kard_jax.cli.commands.pipeline import read_stage_configs
from kard_jax.data.example import read_examples
from kard_jax.data.jsonl import iter_jsonl, read_jsonl
from kard_jax.data.rationale import read_rationales
from kard_jax.pipeline import config as config_lib
from kard_jax.pipeline import runner, stages
from kard_jax.report import results

TINY_STUDENT = ["T5Config.d_model=32", "T5Config.num_heads=2", "T5Config.head_dim=16",
                "T5Config.d_ff=64", "TRAIN_STEPS=3", "WARMUP_STEPS=1", "BATCH_SIZE=8",
                "TASK_FEATURE_LENGTHS={'inputs': 160, 'targets': 48}"]


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
  stage_configs = read_stage_configs(config)
  with pytest.MonkeyPatch.context() as patch:  # no stage parses or clears gin (issue #17)
    for name in ("parse_config_files_and_bindings", "parse_config", "clear_config"):
      patch.setattr(gin, name, _no_gin_in_stages(name))
    outcome = runner.run(config, str(root / "work"), stage_configs,
                         command="pytest mini pipeline")
  return root, config, outcome


def _no_gin_in_stages(name):
  def refuse(*args, **kwargs):
    raise AssertionError(f"a pipeline stage called gin.{name}: gin is read at the entry only")
  return refuse


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
  for split in ("validation", "test"):
    scicot = read_rationales(view / "rationales" / f"scicot_{split}.jsonl")
    assert [r.id for r in scicot] == [ex.id for ex in splits[split]]
  for model_dir in _stage_dirs(outcome, "train"):
    assert any(n.startswith("checkpoint_") for n in os.listdir(os.path.join(model_dir, "model")))


def test_accuracy_equals_a_recount_of_the_predictions(first_run):
  root, _, outcome = first_run
  evals = sorted(set(_stage_dirs(outcome, "eval")))
  # 6 students, 3 with self-consistency, 1 in the sweep, Sci-CoT stage 1 on validation, 1 more
  # seed
  assert len(evals) == 12
  for d in evals:
    split = json.loads(open(os.path.join(d, "metrics.json")).read())["split"]
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
                             / "examples" / f"{split}.jsonl")
    counted = results.recount(os.path.join(d, "predictions.jsonl"), examples)
    assert counted["accuracy"]["all"] == pytest.approx(100 * metrics["accuracy"])


def test_results_table_lists_every_method(first_run):
  root, config, outcome = first_run
  res = outcome.results
  methods = [r["method"] for r in res["rows"]]
  assert set(methods) == set(config_lib.DEFAULT_METHODS)
  assert sum(r["decoding"].startswith("self-consistency") for r in res["rows"]) == 3
  teacher = next(r for r in res["rows"] if r["method"] == "teacher")
  assert teacher["accuracy"]["all"] == 100.0  # the synthetic oracle, named for what it is
  assert teacher["name"] == "Oracle (the generator's chain of facts)"
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
  again = runner.run(config, str(root / "work"), read_stage_configs(config),
                     command="pytest mini pipeline")
  assert [r["status"] for r in again.stages] == ["reused"] * len(again.stages)
  assert [r["dir"] for r in again.stages] == [r["dir"] for r in outcome.stages]
  assert again.results["rows"] == outcome.results["rows"]
  # A new sampling seed re-runs only the self-consistency evaluations.
  changed_config = dataclasses.replace(config, eval_seed=1)
  changed = runner.run(changed_config, str(root / "work"), read_stage_configs(changed_config),
                       write=False)
  ran = {r["stage"] for r in changed.stages if r["status"] == "ran"}
  assert ran and all("_sc" in s for s in ran)


# ------------------------------------------------------------------------------------------------
# Stage contracts: what each stage's input holds, checked against the files of the stages before
# it (not against the code that built it).

INPUT_LENGTH = 160  # TINY_STUDENT's TASK_FEATURE_LENGTHS['inputs']


def _eval_dir(outcome, name: str) -> str:
  dirs = {r["dir"] for r in outcome.stages if r["stage"] == f"synthetic/eval/{name}/s0"}
  assert len(dirs) == 1, (name, dirs)
  return dirs.pop()


def _predictions(outcome, name: str) -> dict[str, dict]:
  return {obj["id"]: obj for _, obj in iter_jsonl(
      os.path.join(_eval_dir(outcome, name), "predictions.jsonl"))}


def _train_rows(root, config, suffix: str) -> list[dict]:
  """The rows the trainer reads: the SeqIO task as the pipeline registers it for training."""
  import seqio
  import tasks

  view = root / "work" / "data" / "synthetic"
  tasks.register_benchmark("synthetic", view, prefix="contract",
                           num_passages=config.num_passages, max_rationales=config.max_rationales,
                           max_input_length=INPUT_LENGTH)
  ds = seqio.get_mixture_or_task(f"contract_synthetic_{suffix}").get_dataset(
      None, split="train", shuffle=False)
  return [{"id": ex["id"].decode(), "sample": int(ex["sample"]),
           "inputs": ex["inputs_pretokenized"].decode(),
           "targets": ex["targets_pretokenized"].decode()} for ex in ds.as_numpy_iterator()]


def _view(root):
  return root / "work" / "data" / "synthetic"


def _passages(root, name: str) -> dict[tuple, list[str]]:
  return {(obj["id"], obj.get("sample")): [p["text"] for p in obj["passages"]]
          for _, obj in iter_jsonl(_view(root) / "retrieval" / f"{name}.jsonl")}


def _knowledge(inputs: str) -> str:
  assert " Knowledge: " in inputs and inputs.endswith(" Explanation:"), inputs
  return inputs.split(" Knowledge: ", 1)[1][:-len(" Explanation:")]


def _holds_passages(inputs: str, passages: list[str], k: int) -> bool:
  """The input's knowledge is these passages, in order (their end shortened when the input
  had to fit the length): True when they are there whole."""
  from kard_jax.data.prompts import clean

  whole = " ".join(clean(p) for p in passages[:k])
  knowledge = _knowledge(inputs)
  assert knowledge and whole.startswith(knowledge), (knowledge, whole)
  return knowledge == whole


def test_kard_training_input_holds_the_passages_of_its_own_rationale(first_run):
  root, config, _ = first_run
  by_key = _passages(root, "rationale_train")
  rows = _train_rows(root, config, "kard_bm25")
  assert rows
  whole = 0
  for row in rows:
    whole += _holds_passages(row["inputs"], by_key[(row["id"], int(row["sample"]))],
                             config.num_passages)
  assert whole >= len(rows) // 2
  # The two rationales of one question retrieved different passages, and each row reads its own.
  differing = [(i, s) for (i, s) in by_key if s == 1 and by_key[(i, 0)] != by_key[(i, 1)]]
  assert differing


def test_kard_evaluation_inputs_hold_question_bm25_and_reranked_passages(first_run):
  root, config, outcome = first_run
  question, reranked = _passages(root, "question_test"), _passages(root, "reranked_test")
  bm25_preds, rerank_preds = _predictions(outcome, "kard_bm25"), _predictions(outcome, "kard_rerank")
  assert len(bm25_preds) == len(rerank_preds) == 16
  k = config.num_passages
  for example_id, pred in bm25_preds.items():
    _holds_passages(pred["inputs"], question[(example_id, None)], k)
    _holds_passages(rerank_preds[example_id]["inputs"], reranked[(example_id, None)], k)
  # The reranker changed BM25's order on at least one example, and that example's input shows it.
  changed = [i for i in bm25_preds if question[(i, None)][:k] != reranked[(i, None)][:k]]
  assert changed
  assert any(bm25_preds[i]["inputs"] != rerank_preds[i]["inputs"] for i in changed)


def test_scicot_stage2_reads_stage1_rationales_verbatim(first_run):
  from kard_jax.data.prompts import scicot_answer_inputs

  root, _, outcome = first_run
  stage1 = {"test": _predictions(outcome, "reasoning"),
            "validation": _predictions(outcome, "reasoning_validation")}
  for split, predictions in stage1.items():
    handed = {r.id: r for r in read_rationales(
        _view(root) / "rationales" / f"scicot_{split}.jsonl")}
    assert set(handed) == set(predictions) and len(handed) == (16 if split == "test" else 8)
    for example_id, pred in predictions.items():
      # The first greedy decode, character for character, and the answer stage 1 reached.
      assert handed[example_id].rationale == pred["rationales"][0]
      assert handed[example_id].answer == pred["prediction"]
  examples = {ex.id: ex for ex in read_examples(_view(root) / "examples" / "test.jsonl")}
  exact = 0
  for example_id, pred in _predictions(outcome, "scicot").items():
    ex, text = examples[example_id], stage1["test"][example_id]["rationales"][0]
    expected = scicot_answer_inputs(ex.question, ex.choices, text)
    if pred["inputs"] == expected:
      exact += 1
    else:  # fitted to the input length: the rationale's beginning, the cue kept
      explanation = pred["inputs"].split(" Explanation: ", 1)[1]
      assert explanation.endswith(" Answer:") and expected.startswith(
          pred["inputs"][:-len(" Answer:")])
  assert exact >= 8


def test_scicot_stage2_trains_on_teacher_rationales_without_their_answer(first_run):
  from kard_jax.data.answers import filter_rationales
  from kard_jax.data.prompts import answer_phrase, answer_target, strip_answer

  root, config, _ = first_run
  train = {ex.id: ex for ex in read_examples(_view(root) / "examples" / "train.jsonl")}
  teacher = {(r.id, r.sample): r.rationale for r in filter_rationales(
      read_rationales(_view(root) / "rationales" / "train.jsonl"), train)}
  rows = _train_rows(root, config, "scicot_answer")
  assert len(rows) == len(teacher)
  for row in rows:
    rationale = teacher[(row["id"], int(row["sample"]))]
    explanation = row["inputs"].split(" Explanation: ", 1)[1]
    assert explanation.endswith(" Answer:")
    stripped = strip_answer(rationale)
    assert stripped and stripped != rationale and "the answer is" in rationale.lower()
    assert stripped.startswith(explanation[:-len(" Answer:")])
    assert "answer is" not in explanation.lower()
    assert row["targets"] == answer_target(answer_phrase(train[row["id"]]))


def test_distilling_step_by_step_trains_both_prefixes_and_answers_with_one(first_run):
  from kard_jax.data import prompts

  root, config, outcome = first_run
  rationale_rows = _train_rows(root, config, "multitask_rationale")
  answer_rows = _train_rows(root, config, "multitask_answer")
  assert rationale_rows and answer_rows
  assert all(r["inputs"].startswith(prompts.RATIONALE_PREFIX + "Question: ")
             and r["inputs"].endswith(" Explanation:") for r in rationale_rows)
  assert all(r["inputs"].startswith(prompts.ANSWER_PREFIX + "Question: ")
             and r["inputs"].endswith(" Answer:") for r in answer_rows)
  gin_text = open(config_lib.method_gin(config, "multitask")).read()
  assert "MIXTURE_OR_TASK_NAME = 'kard_synthetic_multitask'" in gin_text
  examples = {ex.id: ex for ex in read_examples(_view(root) / "examples" / "test.jsonl")}
  for example_id, pred in _predictions(outcome, "multitask").items():
    ex = examples[example_id]
    assert pred["inputs"] == prompts.multitask_answer_inputs(ex.question, ex.choices)


def test_self_consistency_prediction_is_the_vote_of_its_stored_samples(first_run):
  from kard_jax.data.answers import parse_answer

  root, _, outcome = first_run
  examples = {ex.id: ex for ex in read_examples(_view(root) / "examples" / "test.jsonl")}
  names = [r["stage"].split("/")[-2] for r in outcome.stages
           if r["stage"].startswith("synthetic/eval/") and r["stage"].endswith("_sc2/s0")]
  assert sorted(names) == ["kard_bm25_sc2", "kard_rerank_sc2", "reasoning_sc2"]
  for name in names:
    for example_id, pred in _predictions(outcome, name).items():
      ex = examples[example_id]
      assert len(pred["rationales"]) == 2
      answers = [parse_answer(t, ex.choices) for t in pred["rationales"]]
      assert pred["answers"] == answers
      # Recounted here: most votes, then the highest summed log-prob, then choice order.
      order = [c.label for c in ex.choices]
      tally = {}
      for answer, score in zip(answers, pred["scores"]):
        if answer is not None:
          count, total = tally.get(answer, (0, 0.0))
          tally[answer] = (count + 1, total + score)
      expected = (max(sorted(tally, key=order.index), key=lambda a: tally[a])
                  if tally else None)
      assert pred["prediction"] == expected, (name, example_id)


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
