"""Gin files -> `TrainConfig` at the process edge (`flags.read_gin`): built objects that need no gin
afterwards, and gin empty after the read."""

from __future__ import annotations

import gin
import jax.numpy as jnp
import pytest

from kard_jax.data.errors import InputError
from kard_jax.cli import flags
from kard_jax.training import train as train_lib

GIN = """
from __gin__ import dynamic_registration
from kard_jax.training import optimizers
from kard_jax.training import train as train_script
include 'gin_configs/models/t5_tiny.gin'
include 'gin_configs/runs/finetune.gin'

MIXTURE_OR_TASK_NAME = 'kard_test_reverse'
TASK_FEATURE_LENGTHS = {'inputs': 16, 'targets': 8}
TRAIN_STEPS = 7
train_script.train.optimizer = @optimizers.sgd
train_script.train.learning_rate = 0.5
train_script.train.keep_checkpoints = 4
optimizers.sgd.max_grad_norm = 1.0
"""


@pytest.fixture
def gin_file(tmp_path):
  path = tmp_path / "run.gin"
  path.write_text(GIN)
  return str(path)


def test_read_config_is_built_and_gin_is_empty_after(gin_file, tmp_path):
  gin.parse_config("MODEL_DIR = 'left over from an earlier parse'")
  config = flags.read_gin([gin_file], ["TRAIN_STEPS = 9", "MODEL_DIR = 'x'"],
                          lambda: train_lib.config_from_gin(model_dir=str(tmp_path / "run")))
  assert gin.config_str().strip() == ""

  assert isinstance(config, train_lib.TrainConfig)
  assert config.total_steps == 9  # the binding after the file wins
  assert config.keep_checkpoints == 4 and config.learning_rate == 0.5
  assert config.model_dir == str(tmp_path / "run")
  assert config.train_dataset_cfg.mixture_or_task_name == "kard_test_reverse"
  assert config.train_dataset_cfg.task_feature_lengths == {"inputs": 16, "targets": 8}
  assert type(config.model).__name__ == "EncoderDecoderModel"
  assert "TRAIN_STEPS = 9" in config.config_text  # written as the run's config.gin
  # Unbound parameters keep `train`'s defaults.
  assert config.eval_steps is None and config.num_microbatches is None

  # The optimizer was built in the read: its gin binding (clipping at norm 1) holds after it.
  grads = {"w": jnp.array([3.0, 4.0])}
  updates, _ = config.optimizer.update(grads, config.optimizer.init(grads), grads)
  assert jnp.allclose(updates["w"], -0.5 * jnp.array([0.6, 0.8]))


def test_read_empties_gin_after_an_error_and_names_a_missing_file(gin_file, tmp_path):
  with pytest.raises(ValueError, match="no_such_parameter"):
    flags.read_gin([gin_file], ["train_script.train.no_such_parameter = 1"], lambda: None)
  assert gin.config_str().strip() == ""

  def fails():
    raise RuntimeError("build failed")
  with pytest.raises(RuntimeError, match="build failed"):
    flags.read_gin([gin_file], [], fails)
  assert gin.config_str().strip() == ""
  with pytest.raises(InputError, match="missing.gin"):
    flags.read_gin([str(tmp_path / "missing.gin")], [], lambda: None)
  assert gin.config_str().strip() == ""
