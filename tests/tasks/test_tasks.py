"""SeqIO tasks: registration of every benchmark, lazy reading, rows, round trips and the metric."""

import json
import os
import shutil

import numpy as np
import pytest
import seqio

import tasks
from kard_jax.data import jsonl, prompts, vocab
from kard_jax.data.errors import InputError
from kard_jax.data.example import read_examples
from kard_jax.data.rationale import Rationale, read_rationales, write_rationales
from kard_jax.data.synthetic import SyntheticConfig, write_benchmark
from tasks import metrics, records

CONFIG = SyntheticConfig(num_entities=60, num_validation=12, num_test=16, seed=2)
K = 2  # passages per KARD input


def _retrieval_line(example_id, sample, query, passages):
  return {"id": example_id, "sample": sample, "query": query,
          "passages": [{"id": p["id"], "title": p["title"], "text": p["text"],
                        "score": 1.0 / (i + 1)} for i, p in enumerate(passages)]}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
  """A tiny synthetic benchmark with a vocabulary and stand-in retrieval / Sci-CoT files."""
  root = tmp_path_factory.mktemp("data") / "synthetic"
  write_benchmark(CONFIG, root)
  vocab.train_benchmark_vocab(root, 500)
  kb = {p["id"]: p for p in jsonl.read_jsonl(root / "kb" / "passages.jsonl")}
  others = sorted(kb)[:5]
  train = {ex.id: ex for ex in read_examples(root / "examples" / "train.jsonl")}
  lines = []
  for r in read_rationales(root / "rationales" / "train.jsonl"):
    gold = train[r.id].extra["gold_passages"]
    lines.append(_retrieval_line(r.id, r.sample, "rationale",
                                 [kb[p] for p in gold[::-1]] + [kb[others[r.sample]]]))
  jsonl.write_jsonl(root / "retrieval" / "rationale_train.jsonl", lines)
  for split in ("validation", "test"):
    examples = read_examples(root / "examples" / f"{split}.jsonl")
    for name, order in (("question", 1), ("reranked", -1)):
      jsonl.write_jsonl(root / "retrieval" / f"{name}_{split}.jsonl", [
          _retrieval_line(ex.id, None, "question" if order == 1 else "reranked",
                          [kb[p] for p in (ex.extra["gold_passages"] + others)[::order]])
          for ex in examples])
    write_rationales(root / "rationales" / f"scicot_{split}.jsonl", [
        Rationale(ex.id, s, f"Stage one says {ex.answer_text}. So, the answer is {ex.answer}.",
                  ex.answer) for ex in examples for s in (1, 0)])
  names = tasks.register_benchmark("synthetic", root, prefix="test", num_passages=K)
  return root, names


def _rows(name, split):
  ds = seqio.get_mixture_or_task(name).get_dataset(None, split=split, shuffle=False)
  return list(ds.as_numpy_iterator())


def test_every_benchmark_has_every_task_registered_on_import():
  assert set(tasks.BENCHMARKS) == {"medqa", "strategyqa", "obqa", "arc_easy", "arc_challenge",
                                   "synthetic"}
  registered = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  for benchmark in tasks.BENCHMARKS:
    names = tasks.task_names(benchmark)
    assert len(names) == len(records.TASKS) + len(tasks.MIXTURES) == 9
    assert set(names) <= registered
    assert set(tasks.REGISTERED) >= set(names)
    task = seqio.get_mixture_or_task(tasks.task_name(benchmark, "kard_rerank"))
    assert set(task.splits) == {"train", "validation", "test"}
    assert task.output_features["inputs"].add_eos and task.output_features["targets"].add_eos


def test_default_data_root_comes_from_the_environment(monkeypatch, tmp_path):
  monkeypatch.delenv("KARD_DATA_DIR", raising=False)
  assert tasks.data_root() == os.path.abspath(os.path.join("work_dir", "data"))
  monkeypatch.setenv("KARD_DATA_DIR", str(tmp_path))
  assert tasks.data_root() == str(tmp_path)


def test_registration_reads_nothing_and_missing_files_fail_clearly(tmp_path):
  tasks.register_benchmark("synthetic", tmp_path / "absent", prefix="lazy")
  with pytest.raises(InputError, match="file not found"):
    _rows("lazy_synthetic_answer_only", "test")


def test_re_registering_replaces_the_tasks(bench, tmp_path):
  root, _ = bench
  tasks.register_benchmark("synthetic", tmp_path / "absent", prefix="again")
  tasks.register_benchmark("synthetic", root, prefix="again")
  assert len(_rows("again_synthetic_answer_only", "test")) == CONFIG.num_test


def test_row_counts_per_task_and_split(bench):
  root, names = bench
  n_rationales = len(read_rationales(root / "rationales" / "train.jsonl"))
  n_train = len(read_examples(root / "examples" / "train.jsonl"))
  for suffix, spec in records.TASKS.items():
    rows = records.build_rows(spec, root, "train", num_passages=K)
    assert len(rows) == (n_rationales if spec.per_rationale else n_train), suffix
    for split, n in (("validation", CONFIG.num_validation), ("test", CONFIG.num_test)):
      assert len(records.build_rows(spec, root, split, num_passages=K)) == n, suffix
  capped = records.build_rows(records.TASKS["reasoning"], root, "train", max_rationales=1)
  assert len(capped) == n_train and {r["sample"] for r in capped} == {0}
  # The seqio dataset holds exactly these rows.
  assert len(_rows("test_synthetic_reasoning", "train")) == n_rationales
  assert set(names) == set(tasks.task_names("synthetic", "test"))


def _decode_tokens(v, tokens):
  tokens = [int(t) for t in tokens if t != 0]
  assert tokens[-1] == 1  # EOS appended
  return v.decode(tokens[:-1])


@pytest.mark.parametrize("split", ["train", "test"])
def test_kard_example_round_trips_through_the_feature_converter(bench, split):
  root, _ = bench
  task = seqio.get_mixture_or_task("test_synthetic_kard_bm25")
  ds = task.get_dataset({"inputs": 512, "targets": 128}, split=split, shuffle=False)
  model_ds = seqio.EncDecFeatureConverter(pack=False)(ds, {"inputs": 512, "targets": 128})
  first = next(model_ds.as_numpy_iterator())
  assert set(first) == {"encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens",
                        "decoder_loss_weights"}
  v = task.output_features["inputs"].vocabulary
  inputs = _decode_tokens(v, first["encoder_input_tokens"])
  targets = _decode_tokens(v, first["decoder_target_tokens"])
  # The expected prompt, built independently from the files.
  examples = {ex.id: ex for ex in read_examples(root / "examples" / f"{split}.jsonl")}
  kb = {p["id"]: p["text"] for p in jsonl.read_jsonl(root / "kb" / "passages.jsonl")}
  if split == "train":
    r = read_rationales(root / "rationales" / "train.jsonl")[0]
    ex = examples[r.id]
    passages = [kb[p] for p in ex.extra["gold_passages"][::-1]][:K]
    assert targets == r.rationale
  else:
    ex = read_examples(root / "examples" / "test.jsonl")[0]
    passages = [kb[p] for p in ex.extra["gold_passages"]][:K]
    assert targets == f"So, the answer is {ex.answer}."
  assert inputs == prompts.kard_inputs(ex.question, ex.choices, passages)
  # Decoder input is the target shifted right by one (T5's teacher forcing).
  np.testing.assert_array_equal(first["decoder_input_tokens"][1:],
                                first["decoder_target_tokens"][:-1])


def test_rerank_and_scicot_tasks_read_their_files(bench):
  root, _ = bench
  ex = read_examples(root / "examples" / "validation.jsonl")[0]
  kb = {p["id"]: p["text"] for p in jsonl.read_jsonl(root / "kb" / "passages.jsonl")}
  reranked = _rows("test_synthetic_kard_rerank", "validation")[0]
  others = sorted(kb)[:5]
  expected = [kb[p] for p in (ex.extra["gold_passages"] + others)[::-1]][:K]
  assert reranked["inputs_pretokenized"].decode() == prompts.kard_inputs(ex.question, ex.choices,
                                                                          expected)
  scicot = _rows("test_synthetic_scicot_answer", "validation")[0]
  assert scicot["inputs_pretokenized"].decode() == prompts.scicot_answer_inputs(
      ex.question, ex.choices, f"Stage one says {ex.answer_text}.")  # sample 0, answer removed
  assert scicot["targets_pretokenized"].decode() == f"The answer is {ex.answer}."


def test_multitask_mixture_mixes_both_prefixes(bench):
  ds = seqio.get_mixture_or_task("test_synthetic_multitask").get_dataset(
      {"inputs": 512, "targets": 128}, split="train", shuffle=True, seed=0)
  task = seqio.get_mixture_or_task("test_synthetic_multitask_answer")
  v = task.output_features["inputs"].vocabulary
  starts = {v.decode([int(t) for t in ex["inputs"]]).split()[0]
            for ex in ds.take(40).as_numpy_iterator()}
  assert starts == {"[rationale]", "[answer]"}


def test_evaluator_scores_parsed_answers(bench):
  """The seqio Evaluator path: postprocess gets each example's choices; accuracy is a recount."""
  root, _ = bench
  name = "test_synthetic_reasoning"
  examples = read_examples(root / "examples" / "test.jsonl")
  v = seqio.get_mixture_or_task(name).output_features["targets"].vocabulary
  evaluator = seqio.Evaluator(name, seqio.EncDecFeatureConverter(pack=False), eval_split="test",
                              async_compute_metrics=False)

  def answering(text_of):
    def predict_fn(ds):  # like a decoder: fixed-length rows, EOS then padding
      out = []
      for i, _ in ds.as_numpy_iterator():
        tokens = v.encode(text_of(examples[i])) + [1]
        out.append((i, tokens + [0] * (48 - len(tokens))))
      return out
    return predict_fn

  def accuracy(text_of):
    result, _ = evaluator.evaluate(compute_metrics=True, predict_fn=answering(text_of))
    return result.result()[name]["accuracy"]

  assert accuracy(lambda ex: f"Some reasoning. So, the answer is {ex.answer_text}.") == 100.0
  # "A" where A is gold, no answer elsewhere: the accuracy is the share of gold A's.
  mixed = accuracy(lambda ex: "So, the answer is A." if ex.answer == "A" else "I do not know.")
  share_a = 100.0 * sum(ex.answer == "A" for ex in examples) / len(examples)
  assert 0 < mixed == pytest.approx(share_a)


def test_postprocess_and_vote():
  example = {"answer": b"B", "choices": json.dumps([["A", "yes"], ["B", "no"]]).encode()}
  assert metrics.postprocess("anything", example=example, is_target=True) == "B"
  assert metrics.postprocess("So, the answer is no.", example=example) == "B"
  assert metrics.postprocess("gibberish", example=example) is None
  votes = ["the answer is A", "the answer is B", "?", "the answer is B", "the answer is A"]
  assert metrics.postprocess(votes, example=example) == "A"  # tie: first reached wins
  assert metrics.postprocess(votes[1:], example=example) == "B"
  assert metrics.vote([None, None]) is None
  assert metrics.accuracy(["A", "B", "C", "D"], ["A", None, "C", "A"]) == {"accuracy": 50.0}


def _without_stage1(bench, tmp_path, split="validation"):
  """A copy of the benchmark whose Sci-CoT stage-1 rationales for `split` are not written yet."""
  root, _ = bench
  copy = tmp_path / "synthetic"
  shutil.copytree(root, copy)
  os.remove(copy / "rationales" / f"scicot_{split}.jsonl")
  return copy


def test_scicot_answer_without_stage1_rationales_names_the_file_and_the_commands(bench, tmp_path):
  copy = _without_stage1(bench, tmp_path)
  tasks.register_benchmark("synthetic", copy, prefix="nostage1", num_passages=K)
  name = "nostage1_synthetic_scicot_answer"
  assert set(seqio.get_mixture_or_task(name).splits) == {"train", "validation", "test"}
  assert _rows(name, "train") and len(_rows(name, "test")) == CONFIG.num_test
  with pytest.raises(InputError) as caught:
    _rows(name, "validation")  # what T5X's train-eval reads
  message = str(caught.value)
  assert message.startswith(str(copy / "rationales" / "scicot_validation.jsonl") + ": file not found")
  for part in ("kard_synthetic_scicot_answer", "python -m t5x.infer",
               "--gin.MIXTURE_OR_TASK_NAME=\"'kard_synthetic_scicot_rationale'\"",
               "--gin.utils.DatasetConfig.split=\"'validation'\"",
               "python -m kard_jax.interop.t5x_rationales", "--split validation",
               "train_eval_dataset_cfg=None"):
    assert part in message, part


def _t5x_infer_lines(examples, with_ids=False):
  """What t5x.infer writes for kard_synthetic_scicot_rationale: the task's rows, in order."""
  rows = _rows("test_synthetic_scicot_rationale", "validation")
  assert [r["id"].decode() for r in rows] == [ex.id for ex in examples]
  lines = []
  for i, (ex, row) in enumerate(zip(examples, rows)):
    inputs = {"inputs_pretokenized": row["inputs_pretokenized"].decode(),
              "targets_pretokenized": row["targets_pretokenized"].decode()}
    if with_ids:
      inputs["id"] = ex.id
    lines.append({"inputs": inputs,
                  "prediction": f"Decoded {i}: {ex.answer_text}. So, the answer is {ex.answer}."})
  return lines


def test_t5x_stage1_predictions_become_stage2_validation_inputs(bench, tmp_path, capsys):
  from kard_jax.interop import t5x_rationales

  copy = _without_stage1(bench, tmp_path)
  examples = read_examples(copy / "examples" / "validation.jsonl")
  infer_file = tmp_path / "kard_synthetic_scicot_rationale-predict.jsonl-00000-of-00001"
  jsonl.write_jsonl(infer_file, _t5x_infer_lines(examples))
  assert t5x_rationales.main(["--infer_file", str(infer_file), "--data_dir", str(copy),
                              "--split", "validation"]) == 0
  assert "wrote 12 rationales" in capsys.readouterr().out
  written = read_rationales(copy / "rationales" / "scicot_validation.jsonl")
  assert [(r.id, r.sample, r.answer) for r in written] == [(ex.id, 0, ex.answer) for ex in examples]
  # Stage 2's validation rows carry exactly those rationales.
  tasks.register_benchmark("synthetic", copy, prefix="t5xstage1", num_passages=K)
  stage2 = _rows("t5xstage1_synthetic_scicot_answer", "validation")
  assert len(stage2) == len(examples)
  for i, (ex, row) in enumerate(zip(examples, stage2)):
    rationale = f"Decoded {i}: {ex.answer_text}. So, the answer is {ex.answer}."
    assert row["inputs_pretokenized"].decode() == prompts.render_inputs(
        "scicot_answer", ex, rationale=rationale)
    assert f"Decoded {i}: " in row["inputs_pretokenized"].decode()


def test_t5x_stage1_conversion_refuses_misaligned_predictions(bench, tmp_path, capsys):
  from kard_jax.interop import t5x_rationales

  copy = _without_stage1(bench, tmp_path)
  examples = read_examples(copy / "examples" / "validation.jsonl")
  infer_file = tmp_path / "infer.jsonl"
  jsonl.write_jsonl(infer_file, _t5x_infer_lines(examples)[::-1])
  with pytest.raises(InputError, match=r"infer.jsonl:1: the input is not the Sci-CoT stage-1 "):
    t5x_rationales.convert(infer_file, copy, "validation")
  jsonl.write_jsonl(infer_file, _t5x_infer_lines(examples)[:-1])
  assert t5x_rationales.main(["--infer_file", str(infer_file), "--data_dir", str(copy),
                              "--split", "validation"]) == 1
  assert "11 predictions for the 12 examples" in capsys.readouterr().err
  assert not (copy / "rationales" / "scicot_validation.jsonl").exists()
  # With ids among the inputs (input_fields_to_include), the order does not matter.
  jsonl.write_jsonl(infer_file, _t5x_infer_lines(examples, with_ids=True)[::-1])
  written = t5x_rationales.convert(infer_file, copy, "validation")
  assert {r.id for r in written} == {ex.id for ex in examples}
  assert all(r.rationale.endswith(f"the answer is {r.answer}.") for r in written)


def test_an_over_long_input_gives_the_same_tokens_in_training_and_in_the_evaluator(bench):
  """Passages are shortened to fit the input length, never the question, choices or cue; the
  training pipeline (SeqIO trimming to TASK_FEATURE_LENGTHS) and the evaluator read the same ids."""
  from kard_jax.decoding.evaluate import load_rows

  root, _ = bench
  name = "test_synthetic_kard_bm25"
  v = seqio.get_mixture_or_task(name).output_features["inputs"].vocabulary
  full = records.build_rows(records.TASKS["kard_bm25"], root, "test", num_passages=K)
  lengths = [len(v.encode(r["inputs"])) + 1 for r in full]
  limit = sorted(lengths)[len(lengths) // 2]  # half the test inputs are too long
  tasks.register_benchmark("synthetic", root, prefix="fit", num_passages=K,
                           max_input_length=limit)
  fit = "fit_synthetic_kard_bm25"
  trained = {bytes(ex["id"]).decode(): [int(t) for t in ex["inputs"]]
             for ex in seqio.get_mixture_or_task(fit).get_dataset(
                 {"inputs": limit, "targets": 48}, split="test", shuffle=False
             ).as_numpy_iterator()}
  rows, _ = load_rows(fit, "test")
  over = [r for r, n in zip(full, lengths) if n > limit]
  assert over and len(rows) == len(full)
  for row in rows:
    assert row.tokens.tolist() == trained[row.id]
    assert len(trained[row.id]) <= limit and trained[row.id][-1] == 1
  examples = {ex.id: ex for ex in read_examples(root / "examples" / "test.jsonl")}
  for r in over:
    row = next(x for x in rows if x.id == r["id"])
    ex = examples[r["id"]]
    head = f"{prompts.question_block(ex.question, ex.choices)} Knowledge:"
    assert row.inputs.startswith(head) and row.inputs.endswith(" Explanation:")
    # What remains of the passages is their beginning, in order.
    kept = row.inputs[len(head):-len(" Explanation:")].strip()
    assert r["inputs"][len(head):].strip().startswith(kept)
    # Unfitted, SeqIO's trimming would have cut the cue off the training input.
    cut = v.decode(v.encode(r["inputs"])[:limit - 1])
    assert not cut.endswith("Explanation:")
  # Inputs that fit are unchanged.
  fitted = {x.id: x.inputs for x in rows}
  assert all(fitted[r["id"]] == r["inputs"] for r, n in zip(full, lengths) if n <= limit)


def test_an_input_whose_question_alone_is_too_long_is_an_error_naming_it(bench):
  root, _ = bench
  with pytest.raises(InputError, match=r"test\.jsonl: example .* raise "
                     r"TASK_FEATURE_LENGTHS\['inputs'\]"):
    records.build_rows(records.TASKS["answer_only"], root, "test", max_input_length=8,
                       count_tokens=lambda text: len(text.split()))


def test_a_training_row_without_its_own_rationale_passages_is_an_error(bench, tmp_path):
  """No fallback to another key: a (example, sample) absent from the retrieval file fails."""
  import shutil

  root, _ = bench
  copy = tmp_path / "synthetic"
  shutil.copytree(root, copy)
  path = copy / "retrieval" / "rationale_train.jsonl"
  lines = jsonl.read_jsonl(path)
  dropped, sample = lines[0]["id"], lines[0]["sample"]
  for line in lines:  # what older files held: one question-keyed entry per example
    if line["id"] == dropped:
      line["sample"] = None
  jsonl.write_jsonl(path, lines)
  with pytest.raises(InputError, match=rf"rationale_train\.jsonl: no passages for example "
                     rf"'{dropped}' rationale sample {sample}"):
    records.build_rows(records.TASKS["kard_bm25"], copy, "train", num_passages=K)
