"""What a pipeline run reads from gin files, read once at the entry (`runner.gin_reads`, executed by
`kard pipeline`'s `read_stage_configs`): one student per (training method, seed), the reranker's
config when a method needs it, and nothing of gin left afterwards."""

from __future__ import annotations

import dataclasses

import gin
import pytest

from kard_jax.cli.commands.pipeline import read_stage_configs
from kard_jax.pipeline import config as config_lib
from kard_jax.pipeline import runner
from kard_jax.pipeline import student_stages as ss
from kard_jax.training import train as train_lib


def _config(**changes) -> config_lib.PipelineConfig:
  base = config_lib.PipelineConfig(
      benchmark="synthetic", vocab_size=300, vocab_extra_ids=0,
      methods=("teacher", "answer_only", "kard_bm25", "kard_rerank", "scicot"),
      seeds=(0, 1), seed_methods=("answer_only",), sweep_entities=(),
      train_bindings=("TRAIN_STEPS = 70",))
  return dataclasses.replace(base, **changes)


def test_reads_one_student_per_training_method_and_seed():
  reads = runner.gin_reads(_config())
  # kard_rerank shares kard_bm25's student; Sci-CoT's stage 1 is reasoning distillation's; the
  # teacher trains nothing; only answer_only trains every seed.
  assert set(reads) == {"reranker", ("student", "answer_only", 0), ("student", "answer_only", 1),
                        ("student", "kard_bm25", 0), ("student", "reasoning", 0),
                        ("student", "scicot", 0)}
  student = reads[("student", "answer_only", 1)]
  assert student.files == ("gin_configs/synthetic/answer_only.gin",)
  assert student.bindings[:3] == ("VOCAB_SIZE=384", "RANDOM_SEED=1", "TRAIN_STEPS = 70")
  assert reads["reranker"].files == ("gin_configs/synthetic/reranker.gin",)
  # No reranker read when no method (and no sweep) needs it.
  assert "reranker" not in runner.gin_reads(_config(methods=("answer_only",)))
  sweep = runner.gin_reads(_config(methods=("answer_only",), sweep_entities=(10,),
                                   sweep_methods=("kard_rerank",)))
  assert "reranker" in sweep and ("student", "kard_bm25", 0) in sweep


def test_students_are_built_at_the_entry_and_gin_is_empty_after():
  gin.parse_config("MODEL_DIR = 'left over'")
  configs = read_stage_configs(_config(methods=("answer_only", "kard_bm25"), seeds=(0,)))
  assert gin.config_str().strip() == ""
  assert configs.reranker is None
  student = configs.student("kard_rerank", 0)  # kard_rerank's student is kard_bm25's
  assert student is configs.student("kard_bm25", 0)
  assert (student.method, student.seed) == ("kard_bm25", 0)
  assert isinstance(student.train_config, train_lib.TrainConfig)
  assert student.train_config.total_steps == 70  # the pipeline's binding after the gin file
  assert student.train_config.random_seed == 0
  assert student.input_length == 144  # gin_configs/synthetic/run.gin's TASK_FEATURE_LENGTHS
  assert student.train_config.train_dataset_cfg.mixture_or_task_name == (
      "kard_synthetic_kard_bm25")

  placed = student.at("/runs/x/model")
  assert placed.model_dir == "/runs/x/model"
  assert "/runs/x/model" in placed.config_text
  assert ss.MODEL_DIR_PLACEHOLDER not in placed.config_text
  with pytest.raises(KeyError, match="no student read for method 'answer_only', seed 3"):
    configs.student("answer_only", 3)


def test_model_dir_used_beyond_train_model_dir_is_an_error():
  config = _config(methods=("answer_only",), seeds=(0,),
                   train_bindings=("train.init_checkpoint = %MODEL_DIR",))
  with pytest.raises(ValueError, match="answer_only.gin: under `kard pipeline`, MODEL_DIR"):
    read_stage_configs(config)
  assert gin.config_str().strip() == ""
