"""`kard eval` end to end on the known-output student of chain_model.py, saved in the trainer's
layout and read through a registered SeqIO task."""

import json

import numpy as np
import pytest

from kard_jax.data.jsonl import read_jsonl
from kard_jax.decoding import evaluate
from kard_jax.decoding.voting import majority_vote
from kard_jax.cli import main as cli
from tests.decoding.chain_model import (LABEL_PROBS, LABELS, NUM_EXAMPLES, STEP, chain_examples,
                                        passages)


def _eval(root, model_dir, out, *extra):
  args = ["eval", "--model_dir", str(model_dir), "--task", "kard_synthetic_kard_bm25",
          "--data_dir", str(root), "--max_decode_length", "12", "--batch_size", "8",
          "--mesh_shape", "1,1", "--out", str(out), "--no_progress", *extra]
  return cli.main(args)


def test_sampled_eval_writes_predictions_whose_recount_gives_the_metrics(chain_run, tmp_path,
                                                                          capsys):
  root, model_dir = chain_run
  # Sharded: batch over `data`, heads/mlp/vocab over `model`.
  assert _eval(root, model_dir, tmp_path, "--num_samples", "5", "--seed", "1",
               "--mesh_shape", "2,2") == 0
  summary = capsys.readouterr().out
  assert f"kard_synthetic_kard_bm25/test step {STEP}: accuracy" in summary

  records = read_jsonl(tmp_path / evaluate.PREDICTIONS)
  metrics = json.loads((tmp_path / evaluate.METRICS).read_text())
  assert [r["id"] for r in records] == [f"q{i}" for i in range(NUM_EXAMPLES)]
  gold = {ex.id: ex.answer for ex in chain_examples()}
  answers = []
  for i, r in enumerate(records):
    assert r["gold"] == gold[r["id"]]
    assert len(r["rationales"]) == 5 and len(r["scores"]) == 5
    assert all(t == f"So, the answer is {a}." for t, a in zip(r["rationales"], r["answers"]))
    assert r["prediction"] == majority_vote(r["answers"], LABELS, r["scores"]).label
    assert r["correct"] == (r["prediction"] == r["gold"])
    assert r["knowledge"] == " ".join(passages(i))
    # The chain's log-prob of "So, the answer is X." is log p(X).
    np.testing.assert_allclose(
        r["scores"], [np.log(LABEL_PROBS[LABELS.index(a)]) for a in r["answers"]], atol=1e-3)
    answers += r["answers"]
  correct = sum(r["prediction"] == r["gold"] for r in records)
  assert metrics["num_correct"] == correct
  assert metrics["accuracy"] == pytest.approx(correct / NUM_EXAMPLES)
  assert metrics["answer_parse_rate"] == 1.0 and metrics["num_decodes"] == 5 * NUM_EXAMPLES
  assert metrics["checkpoint_step"] == STEP and metrics["family"] == "t5"
  assert len(set(answers)) == 3, "sampling should reach every label"


def test_beam_search_ranks_every_answer_by_its_probability(chain_run, tmp_path):
  root, model_dir = chain_run
  assert _eval(root, model_dir, tmp_path, "--beams", "3", "--alpha", "0") == 0
  records = read_jsonl(tmp_path / evaluate.PREDICTIONS)
  for r in records:  # all three answers, best first, with their exact log-probs
    assert r["answers"] == ["B", "C", "A"] and r["prediction"] == "B"
    np.testing.assert_allclose(r["scores"], np.log([0.45, 0.30, 0.25]), atol=1e-3)
  metrics = json.loads((tmp_path / evaluate.METRICS).read_text())
  want = sum(ex.answer == "B" for ex in chain_examples()) / NUM_EXAMPLES
  assert metrics["accuracy"] == pytest.approx(want)


def test_beam_prediction_is_the_best_parsed_beam_not_a_vote():
  ex = chain_examples()[0]
  row = evaluate.EvalRow(ex.id, "Question: x Knowledge: P one. P two. Explanation:",
                         np.ones(3, np.int32), "B", ex.choices)
  texts = ["no answer here", "So, the answer is B.", "The answer is C.", "the answer is C"]
  beam = evaluate.score_example(row, texts, [-1.0, -2.0, -3.0, -4.0], vote=False)
  assert beam["prediction"] == "B" and beam["correct"] and beam["votes"] == {"B": 1, "C": 2}
  assert beam["answers"] == [None, "B", "C", "C"] and beam["knowledge"] == "P one. P two."
  assert evaluate.score_example(row, texts, [-1.0, -2.0, -3.0, -4.0])["prediction"] == "C"


def test_missing_checkpoint_is_a_clean_error(tmp_path, capsys):
  assert cli.main(["eval", "--model_dir", str(tmp_path), "--task", "x"]) == 2
  assert "model_config.json" in capsys.readouterr().err
