"""The shipped reranker gin files: both temperatures stay positive for the whole configured run."""

import gin
import numpy as np
import pytest

from tests.conftest import REPO_ROOT

FILES = ["gin_configs/reranker/strategyqa.gin", "gin_configs/reranker/synthetic.gin",
         "gin_configs/reranker/cross_encoder.gin", "gin_configs/synthetic/reranker.gin"]


def _parse(path):
  from kard_jax.reranker import stage

  gin.clear_config()
  gin.add_config_file_search_path(str(REPO_ROOT))
  gin.parse_config_files_and_bindings([str(REPO_ROOT / path)], [], finalize_config=False)
  config = stage.TrainConfig.from_gin()  # read out of gin's global config into plain objects
  return config.reranker, config.trainer["total_steps"]


@pytest.mark.parametrize("path", FILES)
def test_temperatures_stay_positive_over_the_whole_run(path):
  try:
    config, total_steps = _parse(path)
  finally:
    gin.clear_config()
  assert config.total_steps == total_steps  # the schedules span exactly the trainer's run
  tau_target, tau_model = config.schedules()
  steps = np.arange(0, total_steps + 1)
  for schedule in (tau_target, tau_model):
    values = np.asarray(schedule(steps))
    assert np.all(values > 0) and np.all(np.isfinite(values))
    np.testing.assert_allclose(values[-1], schedule.end, rtol=1e-5)


def test_the_synthetic_pipelines_reranker_gin_reaches_the_config():
  try:
    config, total_steps = _parse("gin_configs/synthetic/reranker.gin")
  finally:
    gin.clear_config()
  assert total_steps == config.total_steps == 60
  assert config.candidates.rationale_top == 16 and config.candidates.question_top == 16
  assert config.max_query_length == 32 and config.batch_size == 8
  assert config.tau_model_start == 50.0  # from base.gin, bound as stage.RerankerConfig
