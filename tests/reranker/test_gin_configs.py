"""The shipped reranker gin files: both temperatures stay positive for the whole configured run."""

import gin
import numpy as np
import pytest

from tests.conftest import REPO_ROOT

FILES = ["gin_configs/reranker/strategyqa.gin", "gin_configs/reranker/synthetic.gin",
         "gin_configs/reranker/cross_encoder.gin"]


def _parse(path):
  from kard_jax.cli.commands import rerank
  from kard_jax.training import train as train_script

  gin.clear_config()
  gin.add_config_file_search_path(str(REPO_ROOT))
  gin.parse_config_files_and_bindings([str(REPO_ROOT / path)], [], finalize_config=False)
  config = gin.get_bindings(rerank.train_reranker)["config"]  # the configured RerankerConfig
  steps = gin.get_bindings(train_script.train)["total_steps"]
  return config, steps


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
