"""`train(...)`: the one gin-configurable entry point that turns a config into a training run.

Gin files bind it as T5X's do (`from kard_jax.training import train as train_script`, then
`train_script.train.total_steps = ...`); on the command line `--gin.train.total_steps=...` works
too. Everything below this function takes plain arguments.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import gin
import optax

from kard_jax.training import checkpoints as ckpt_lib
from kard_jax.training import input_pipeline
from kard_jax.training import models as models_lib
from kard_jax.training import optimizers
from kard_jax.training import partitioning
from kard_jax.training import trainer as trainer_lib

log = logging.getLogger(__name__)


@gin.configurable
def train(*,
          model: models_lib.BaseModel,
          model_dir: str,
          train_dataset_cfg: input_pipeline.DatasetConfigLike,
          total_steps: int,
          optimizer: Callable[..., optax.GradientTransformation] = optimizers.adafactor,
          learning_rate: float | optax.Schedule = 1e-3,
          train_eval_dataset_cfg: input_pipeline.DatasetConfigLike | None = None,
          eval_period: int = 0,
          eval_steps: int | None = None,
          checkpoint_period: int = 1000,
          keep_checkpoints: int | None = None,
          async_checkpointing: bool = True,
          mesh_shape: Sequence[int] = (-1, 1),
          logical_axis_rules: Sequence[tuple[str, str | None]] | None = None,
          num_microbatches: int | None = None,
          init_checkpoint: str | None = None,
          random_seed: int = 0,
          log_period: int = 10,
          show_progress: bool = True,
          distributed: partitioning.DistributedConfig | None = None
          ) -> trainer_lib.TrainResult:
  """Trains `model` on `train_dataset_cfg` for `total_steps` global batches, resuming `model_dir`.

  Args:
    model: a `models.BaseModel` (e.g. `EncoderDecoderModel(module=t5.Transformer(...))`).
    model_dir: checkpoints, summaries, config.gin and model_config.json go here; an existing
      checkpoint is resumed (a run already at `total_steps` returns at once).
    train_dataset_cfg: `input_pipeline.DatasetConfig` (SeqIO) or any object with `make_input`.
    total_steps: absolute number of optimizer steps.
    optimizer: called as `optimizer(learning_rate)` (bind `@optimizers.adamw`, no parentheses).
    learning_rate: a float or a schedule (`@optimizers.schedule()`).
    train_eval_dataset_cfg, eval_period, eval_steps: teacher-forced evaluation every `eval_period`
      steps and at the end, on `eval_steps` batches (None: one full pass).
    checkpoint_period, keep_checkpoints, async_checkpointing: saves every `checkpoint_period` steps
      and at the end, keeping the newest `keep_checkpoints` (None: all).
    mesh_shape: (data, model) sizes; -1 fills the remaining devices.
    logical_axis_rules: default `partitioning.standard_logical_axis_rules()`.
    num_microbatches: gradient accumulation over this many slices of each batch.
    init_checkpoint: parameters to start from when `model_dir` has no checkpoint: a parameter
      checkpoint directory (converted pretrained weights) or another run's model_dir.
    random_seed: seeds parameters, dropout and the data order.
    log_period: steps between summaries (and between checks for a non-finite loss).
    distributed: multi-process settings (`jax.distributed.initialize` when several processes;
      unset fields come from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID). Each
      process then reads its own shard of the input, every process takes part in each checkpoint
      save and restore, and only process 0 writes summaries, config.gin and model_config.json.
  """
  partitioning.maybe_initialize_distributed(distributed)
  rules = list(logical_axis_rules or partitioning.standard_logical_axis_rules())
  mesh = partitioning.create_mesh(mesh_shape)
  shard_info = partitioning.host_shard_info(mesh)
  seed = int(random_seed)
  log.info("mesh %s over %d devices, host %d of %d", dict(mesh.shape), mesh.size,
           shard_info.index, shard_info.num_shards)

  converter = model.FEATURE_CONVERTER_CLS
  train_input = train_dataset_cfg.make_input(converter, shard_info, training=True, seed=seed)
  eval_input = None
  if train_eval_dataset_cfg is not None:
    eval_input = train_eval_dataset_cfg.make_input(converter, shard_info, training=False,
                                                   seed=seed)

  tx = optimizer(learning_rate)
  trainer = trainer_lib.Trainer(model, tx, learning_rate, mesh, rules, train_input.element_spec,
                                num_microbatches)
  checkpointer = ckpt_lib.Checkpointer(model_dir, checkpoint_period, keep_checkpoints,
                                       use_async=async_checkpointing)

  def init_params():
    if init_checkpoint is None:
      return None
    path = trainer_lib.find_params_checkpoint(init_checkpoint)
    log.info("initialising parameters from %s", path)
    return ckpt_lib.restore_params(path, trainer.setup.abstract_state.params,
                                   trainer.setup.shardings.params)

  def on_start(state):
    ckpt_lib.write_model_config(model_dir, model.describe())
    ckpt_lib.write_text(model_dir, ckpt_lib.GIN_CONFIG, gin.operative_config_str())

  try:
    return trainer_lib.train_loop(
        trainer, train_input, int(total_steps), model_dir, seed, checkpointer,
        init_params=init_params, eval_input=eval_input, eval_period=int(eval_period),
        eval_steps=eval_steps, log_period=int(log_period), show_progress=show_progress,
        on_start=on_start)
  finally:
    checkpointer.close()
