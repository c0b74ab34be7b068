"""The synthetic benchmark's committed run configurations (issue #18): the default run trains the
three methods that carry the paper's claim with at least three seeds each, every student of both
runs shares one training shape, and the capacity run sweeps at least four sizes with the
reranker beside BM25."""

from __future__ import annotations

import pathlib

import gin
import pytest

from kard_jax.report import claims
from kard_jax.pipeline import config as config_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SYNTHETIC = REPO_ROOT / "gin_configs" / "synthetic"
CORE = ("answer_only", "reasoning", "kard_bm25")


def _pipeline(name: str) -> config_lib.PipelineConfig:
  gin.clear_config()
  gin.parse_config_files_and_bindings([str(SYNTHETIC / name)], [])
  try:
    return config_lib.PipelineConfig()
  finally:
    gin.clear_config()


def _training(method: str) -> tuple:
  from kard_jax.training import train as _train  # noqa: F401  (registers `train`)
  gin.clear_config()
  gin.add_config_file_search_path(str(REPO_ROOT))
  gin.parse_config_files_and_bindings([str(SYNTHETIC / f"{method}.gin")], [],
                                      finalize_config=False)
  try:
    return (repr(gin.query_parameter("%TASK_FEATURE_LENGTHS")),
            gin.query_parameter("%TRAIN_STEPS"), gin.query_parameter("%BATCH_SIZE"),
            gin.query_parameter("%LEARNING_RATE"),
            gin.query_parameter("t5.T5Config.d_model"))
  finally:
    gin.clear_config()


def test_default_run_trains_the_core_methods_with_three_seeds():
  config = _pipeline("pipeline.gin")
  assert set(CORE) <= set(config.methods)
  for method in CORE:
    assert len(config.seeds_for(method)) >= 3, method
  assert config.num_passages == 1
  assert config.sweep_entities == ()
  # The claim's target is checked (and reported) on the default table.
  assert ("kard_bm25", "unseen", 60.0) in claims.TARGETS


def test_capacity_run_sweeps_four_sizes_with_reranker_beside_bm25():
  config = _pipeline("pipeline_capacity.gin")
  assert len(set(config.sweep_entities)) >= 4
  assert config.synthetic["num_entities"] == min(config.sweep_entities)
  assert set(CORE) | {"kard_rerank"} <= set(config.sweep_methods)
  assert config.synthetic["seen_questions"] == "asked"
  assert config.results_name == "synthetic_capacity"


@pytest.mark.parametrize("other", ["reasoning", "kard_bm25", "multitask", "scicot"])
def test_every_synthetic_student_trains_like_fine_tuning(other):
  """One student size, one shape, one step count and rate: the methods differ only in what
  they read and write, so the comparison is fair (and one compiled train step serves all)."""
  assert _training(other) == _training("answer_only")
