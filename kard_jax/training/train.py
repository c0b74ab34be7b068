"""A training run: `run(TrainConfig)`, and `train(...)`, its gin-configurable face.

`run` takes a `TrainConfig` of built objects (model, dataset configs, optimizer) and reads no gin.
Gin files bind `train` as T5X's do (`from kard_jax.training import train as train_script`, then
`train_script.train.total_steps = ...`; on the command line `--gin.train.total_steps=...`);
calling `train` builds the `TrainConfig` from its arguments and runs it. `config_from_gin` builds
the same `TrainConfig` from gin's current bindings of `train` without running it (see
`gin_config`: `kard train` and the pipeline's student stage both train through it).
"""

from __future__ import annotations

import dataclasses
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


DEFAULT_OPTIMIZER = optimizers.adafactor
DEFAULT_LEARNING_RATE = 1e-3


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything one training run needs, built (see `train` for what each field means).

  `optimizer` is the optax transformation itself (made from `train`'s optimizer factory and
  learning rate); `config_text` is written to model_dir/config.gin as the run's configuration.
  """
  model: models_lib.BaseModel
  model_dir: str
  train_dataset_cfg: input_pipeline.DatasetConfigLike
  total_steps: int
  optimizer: optax.GradientTransformation
  learning_rate: float | optax.Schedule = DEFAULT_LEARNING_RATE
  train_eval_dataset_cfg: input_pipeline.DatasetConfigLike | None = None
  eval_period: int = 0
  eval_steps: int | None = None
  checkpoint_period: int = 1000
  keep_checkpoints: int | None = None
  async_checkpointing: bool = True
  mesh_shape: Sequence[int] = (-1, 1)
  logical_axis_rules: Sequence[tuple[str, str | None]] | None = None
  num_microbatches: int | None = None
  init_checkpoint: str | None = None
  random_seed: int = 0
  log_period: int = 10
  show_progress: bool = True
  distributed: partitioning.DistributedConfig | None = None
  config_text: str = ""


def make_config(*, optimizer: Callable[..., optax.GradientTransformation] = DEFAULT_OPTIMIZER,
                learning_rate: float | optax.Schedule = DEFAULT_LEARNING_RATE,
                config_text: str = "", **fields) -> TrainConfig:
  """A `TrainConfig` from `train`'s arguments: the optimizer factory is called here, so a gin
  binding of the optimizer applies where the config is made (not where it runs)."""
  return TrainConfig(optimizer=optimizer(learning_rate), learning_rate=learning_rate,
                     config_text=config_text, **fields)


def config_from_gin(**overrides) -> TrainConfig:
  """The `TrainConfig` that calling `train(**overrides)` would run, from gin's current bindings
  of `train` (references evaluated now: models, dataset configs, the optimizer). Its
  `config_text` is gin's whole parsed configuration (files and bindings)."""
  kwargs = {**gin.get_bindings(train), **overrides}
  return make_config(config_text=gin.config_str(), **kwargs)


@gin.configurable
def train(*,
          model: models_lib.BaseModel,
          model_dir: str,
          train_dataset_cfg: input_pipeline.DatasetConfigLike,
          total_steps: int,
          optimizer: Callable[..., optax.GradientTransformation] = DEFAULT_OPTIMIZER,
          learning_rate: float | optax.Schedule = DEFAULT_LEARNING_RATE,
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
  fields = dict(locals())
  return run(make_config(config_text=gin.operative_config_str(), **fields))


def run(config: TrainConfig) -> trainer_lib.TrainResult:
  """Trains `config.model` for `config.total_steps` global batches, resuming `config.model_dir`
  (a run already at `total_steps` returns at once). Reads no gin."""
  c = config
  partitioning.maybe_initialize_distributed(c.distributed)
  rules = list(c.logical_axis_rules or partitioning.standard_logical_axis_rules())
  mesh = partitioning.create_mesh(c.mesh_shape)
  shard_info = partitioning.host_shard_info(mesh)
  seed = int(c.random_seed)
  log.info("mesh %s over %d devices, host %d of %d", dict(mesh.shape), mesh.size,
           shard_info.index, shard_info.num_shards)

  converter = c.model.FEATURE_CONVERTER_CLS
  train_input = c.train_dataset_cfg.make_input(converter, shard_info, training=True, seed=seed)
  eval_input = None
  if c.train_eval_dataset_cfg is not None:
    eval_input = c.train_eval_dataset_cfg.make_input(converter, shard_info, training=False,
                                                     seed=seed)

  trainer = trainer_lib.Trainer(c.model, c.optimizer, c.learning_rate, mesh, rules,
                                train_input.element_spec, c.num_microbatches)
  checkpointer = ckpt_lib.Checkpointer(c.model_dir, c.checkpoint_period, c.keep_checkpoints,
                                       use_async=c.async_checkpointing)

  def init_params():
    if c.init_checkpoint is None:
      return None
    path = trainer_lib.find_params_checkpoint(c.init_checkpoint)
    log.info("initialising parameters from %s", path)
    return ckpt_lib.restore_params(path, trainer.setup.abstract_state.params,
                                   trainer.setup.shardings.params)

  def on_start(state):
    ckpt_lib.write_model_config(c.model_dir, c.model.describe())
    ckpt_lib.write_text(c.model_dir, ckpt_lib.GIN_CONFIG, c.config_text)

  try:
    return trainer_lib.train_loop(
        trainer, train_input, int(c.total_steps), c.model_dir, seed, checkpointer,
        init_params=init_params, eval_input=eval_input, eval_period=int(c.eval_period),
        eval_steps=c.eval_steps, log_period=int(c.log_period), show_progress=c.show_progress,
        on_start=on_start)
  finally:
    checkpointer.close()
