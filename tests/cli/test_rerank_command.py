"""`kard rerank` end to end on a tiny benchmark: train (shared trainer), evaluate, apply."""

import json

import gin
import pytest

from kard_jax.cli import main as cli
from kard_jax.retrieval.retrieval_file import read_retrieval_file
from tests.reranker import tiny


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("rerank")
  data_dir = tiny.write_benchmark(str(root))
  tiny.build_index(data_dir)
  bert = tiny.write_bert(str(root / "bert"), data_dir)
  gin_file = root / "tiny.gin"
  gin_file.write_text(f"""
from __gin__ import dynamic_registration
from kard_jax.reranker import data
from kard_jax.reranker import stage
include 'gin_configs/reranker/strategyqa.gin'
TRAIN_STEPS = 4
BATCH_SIZE = 8
EVAL_PERIOD = 4
WARMUP_STEPS = 1
stage.RerankerConfig.checkpoint = '{bert}'
stage.RerankerConfig.max_query_length = 16
stage.RerankerConfig.max_passage_length = 24
stage.RerankerConfig.eval_batch_size = 8
stage.RerankerConfig.dev_fraction = 0.2
data.CandidateConfig.rationale_top = 6
data.CandidateConfig.question_top = 6
""")
  return root, data_dir, gin_file


def _run(args, capsys):
  try:
    code = cli.main(args)
  finally:
    gin.clear_config()
  out, err = capsys.readouterr()
  return code, out, err


def test_train_evaluate_apply(setup, capsys):
  root, data_dir, gin_file = setup
  common = ["--data", data_dir, "--index", f"{data_dir}/index", "--model_dir",
            str(root / "run"), "--cache_dir", str(root / "cache"), "--quiet"]
  code, out, err = _run(["rerank", "train", *common, "--gin_file", str(gin_file)], capsys)
  assert code == 0, err
  summary = json.loads(out.strip().splitlines()[-1])
  assert summary["step"] == 4
  assert summary["train"]["tau_target"] > 0 and summary["train"]["tau_model"] > 0
  assert {"top1", "top3", "top5", "loss"} <= set(summary["dev"])
  assert (root / "run" / "checkpoint_4").is_dir()
  assert json.loads((root / "run" / "model_config.json").read_text())["family"] == "reranker"

  code, out, err = _run(["rerank", "evaluate", *common, "--top_n", "10", "--ks", "1,3",
                         "--ceiling_rationales", f"{data_dir}/rationales/train.jsonl",
                         "--split", "train", "--out", str(root / "eval.json")], capsys)
  assert code == 0, err
  result = json.loads((root / "eval.json").read_text())
  rows = result["recall"]["all"]
  assert rows["question_bm25"]["n"] == rows["reranker"]["n"] > 0
  assert 0.0 <= rows["reranker"]["recall@3"] <= 1.0
  assert "rationale_bm25" in result["recall"]["with_rationale"]
  assert set(result["dev"]["kard_accuracy"]["reranker"]) == {"top1", "top3", "top5"}
  assert result["dev"]["recall"]["with_rationale"]["rationale_bm25"]["n"] > 0

  code, out, err = _run(["rerank", "apply", *common, "--split", "validation", "--top_n", "10",
                         "--top_k", "3"], capsys)
  assert code == 0, err
  records = read_retrieval_file(f"{data_dir}/retrieval/reranked_validation.jsonl")
  assert len(records) == tiny.SYNTHETIC.num_validation
  assert all(r.query == "reranked" and r.sample is None and len(r.passages) == 3 for r in records)


def test_help_and_input_errors(setup, capsys, tmp_path):
  with pytest.raises(SystemExit) as e:
    cli.main(["rerank", "--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  assert all(word in out for word in ("train", "evaluate", "apply"))
  root, data_dir, _ = setup
  code, _, err = _run(["rerank", "train", "--data", data_dir, "--index", f"{data_dir}/index",
                       "--model_dir", str(tmp_path / "run")], capsys)
  assert code == 2 and "--gin_file" in err
  code, _, err = _run(["rerank", "evaluate", "--data", data_dir, "--index", f"{data_dir}/index",
                       "--model_dir", str(tmp_path / "nothing")], capsys)
  assert code == 2 and err.startswith("error: ") and "model_config.json" in err
