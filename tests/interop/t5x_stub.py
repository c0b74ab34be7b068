"""Parse our T5X gin files the way `python -m t5x.train/eval/infer` does, without T5X installed.

T5X cannot be installed here (it is on no package registry), so this module stands in for the
parts of it our gin files touch:
  * stub modules `t5x.adafactor`, `t5x.models`, `t5x.partitioning`, `t5x.utils`, ... and a stub
    `__main__` with `train` / `evaluate` / `infer`, registered in `sys.modules` while a file is
    parsed, so gin's dynamic registration imports and configures them as it would T5X's. Every
    stub returns a `Made` record of the arguments gin called it with, and the stubs T5X users bind
    most (DatasetConfig, Adafactor, the models, the partitioner) have T5X's parameter names, so a
    misspelt binding fails here as it would under T5X;
  * the T5X gin files ours include (`t5x/configs/runs/*.gin`, `t5x/examples/t5/t5_1_1/base.gin`),
    reduced to the bindings that decide what our files must set: the REQUIRED macros, the dataset
    configs (pretrain.gin sets batch sizes as literals, finetune.gin through %BATCH_SIZE), the
    partitioner's logical axis rules and the model gin's optimizer;
  * T5X's defaults our models must fit: `T5X_LOGICAL_AXIS_RULES` (what
    `partitioning.standard_logical_axis_rules()` returns with its default arguments) and
    `T5X_FACTOR_RULES` (`adafactor.standard_logical_factor_rules()`, which has no 'abspos_buckets').

`parse(gin_file, bindings)` then returns what the entry point would receive: `Made("train", ...)`
with `model`, `train_dataset_cfg`, `partitioner`, ... as gin builds them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import pathlib
import sys
import types
from typing import Any, Iterator, Sequence

import gin

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# t5x.partitioning.standard_logical_axis_rules() (1-D activation and parameter partitioning).
T5X_LOGICAL_AXIS_RULES = (
    ("batch", "data"), ("vocab", "model"), ("embed", None), ("mlp", "model"), ("heads", "model"),
    ("kv", None), ("joined_kv", "model"), ("relpos_buckets", None), ("abspos_buckets", None),
    ("length", None), ("layers", None), ("stack", None), ("mlp_activations", None))

# t5x.adafactor.standard_logical_factor_rules(), FactorDims by name.
T5X_FACTOR_RULES = {
    "vocab": "column", "embed": "row", "mlp": "column", "heads": "column", "kv": "column",
    "joined_kv": "column", "relpos_buckets": "none", "layers": "batch", "stack": "batch",
    "q_wi_fused": "column", "o_wo_fused": "column", "multiquery_heads": "column",
    "kv_fused": "column", "layer_norm_scale": "none", "mlp_activations": "column"}

# The names t5x.adafactor.factor_name_to_factordim accepts, to the FactorDim each means.
FACTOR_NAMES = {"row": "row", "col": "column", "column": "column", "batch": "batch",
                "none": "none", "unfactorized": "none"}


@dataclasses.dataclass
class Made:
  """A stub configurable's call: its name and the arguments gin passed."""
  name: str
  kwargs: dict[str, Any]

  def __getitem__(self, key: str) -> Any:
    return self.kwargs[key]


def _stub(name: str, params: Sequence[str] | None = None):
  """A function recording its keyword arguments; `params`: T5X's parameter names (None: any)."""
  def fn(**kwargs):
    return Made(name, kwargs)

  fn.__name__ = fn.__qualname__ = name.rsplit(".", 1)[-1]
  if params is not None:
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, default=None) for p in params])
  return fn


def _standard_logical_axis_rules(activation_partitioning_dims: int = 1,
                                 parameter_partitioning_dims: int = 1,
                                 additional_rules=None):
  del activation_partitioning_dims, parameter_partitioning_dims
  return list(T5X_LOGICAL_AXIS_RULES) + list(additional_rules or ())


def _standard_logical_factor_rules():
  return dict(T5X_FACTOR_RULES)


_DATASET_CONFIG = ("mixture_or_task_name", "task_feature_lengths", "split", "batch_size",
                   "shuffle", "seed", "use_cached", "pack", "use_custom_packing_ops", "module",
                   "use_memory_cache", "trim_output_features")
_PARTITIONER = ("num_partitions", "model_parallel_submesh", "params_on_devices", "backend",
                "logical_axis_rules", "use_cpu_pjit")
_ADAFACTOR = ("learning_rate", "factored", "multiply_by_parameter_scale", "beta1", "decay_rate",
              "step_offset", "clipping_threshold", "weight_decay_rate", "min_dim_size_to_factor",
              "epsilon1", "epsilon2", "dtype_momentum", "factor_map", "logical_factor_rules",
              "weight_decay_rate_lr_exponent", "global_norm_clip_threshold",
              "max_parameter_scale", "skip_nan_updates")
_MODEL = ("module", "optimizer_def", "decode_fn", "feature_converter_cls", "label_smoothing",
          "z_loss", "loss_normalizing_factor")
_T5_NETWORK_CONFIG = ("vocab_size", "dtype", "emb_dim", "num_heads", "num_encoder_layers",
                      "num_decoder_layers", "head_dim", "mlp_dim", "mlp_activations",
                      "dropout_rate", "logits_via_embedding", "float32_attention_logits")


def _module(name: str, **attrs) -> types.ModuleType:
  module = types.ModuleType(name)
  module.__dict__.update(attrs)
  return module


def _make_modules() -> dict[str, types.ModuleType]:
  modules = {
      "t5x.adafactor": _module(
          "t5x.adafactor", Adafactor=_stub("Adafactor", _ADAFACTOR),
          standard_logical_factor_rules=_standard_logical_factor_rules),
      "t5x.models": _module(
          "t5x.models",
          EncoderDecoderModel=_stub("EncoderDecoderModel",
                                    _MODEL + ("input_vocabulary", "output_vocabulary")),
          DecoderOnlyModel=_stub("DecoderOnlyModel",
                                 _MODEL + ("vocabulary", "inputs_bidirectional_attention"))),
      "t5x.decoding": _module(
          "t5x.decoding", temperature_sample=_stub(
              "temperature_sample", ("inputs", "cache", "tokens_to_logits", "eos_id",
                                     "decode_rng", "num_decodes", "temperature", "topk", "topp",
                                     "cache_offset", "initial_index", "max_decode_steps"))),
      "t5x.partitioning": _module(
          "t5x.partitioning", PjitPartitioner=_stub("PjitPartitioner", _PARTITIONER),
          ModelBasedPjitPartitioner=_stub("ModelBasedPjitPartitioner", _PARTITIONER),
          standard_logical_axis_rules=_standard_logical_axis_rules),
      "t5x.utils": _module(
          "t5x.utils", DatasetConfig=_stub("DatasetConfig", _DATASET_CONFIG),
          CheckpointConfig=_stub("CheckpointConfig", ("save", "restore")),
          RestoreCheckpointConfig=_stub("RestoreCheckpointConfig"),
          SaveCheckpointConfig=_stub("SaveCheckpointConfig"),
          create_learning_rate_scheduler=_stub(
              "create_learning_rate_scheduler", ("factors", "base_learning_rate",
                                                 "warmup_steps", "decay_factor",
                                                 "steps_per_decay", "steps_per_cycle",
                                                 "step_offset", "min_learning_rate"))),
      "t5x.trainer": _module("t5x.trainer", Trainer=_stub("Trainer"),
                             WeightMetricsComputer=_stub("WeightMetricsComputer")),
      "t5x.gin_utils": _module("t5x.gin_utils",
                               summarize_gin_config=_stub("summarize_gin_config")),
      "t5x.examples.t5.network": _module(
          "t5x.examples.t5.network", Transformer=_stub("Transformer", ("config",)),
          T5Config=_stub("T5Config", _T5_NETWORK_CONFIG)),
  }
  packages = {"t5x": ("adafactor", "models", "decoding", "partitioning", "utils", "trainer",
                      "gin_utils", "examples"),
              "t5x.examples": ("t5",), "t5x.examples.t5": ("network",)}
  for name, children in packages.items():
    package = modules.setdefault(name, _module(name))
    package.__path__ = []
  for name, children in packages.items():
    for child in children:
      setattr(modules[name], child, modules[f"{name}.{child}"])
  modules["__main__"] = _module("__main__", train=_stub("train"), evaluate=_stub("evaluate"),
                                infer=_stub("infer"))
  return modules


# Built once: gin's registry keeps the first object registered under a name.
MODULES = _make_modules()

_RUN_COMMON = """\
MIXTURE_OR_TASK_NAME = %gin.REQUIRED
MIXTURE_OR_TASK_MODULE = None
"""

# Reduced T5X gin files: their imports, REQUIRED macros and the bindings ours build on.
T5X_GINS = {
    "t5x/configs/runs/pretrain.gin": """\
from __gin__ import dynamic_registration
import __main__ as train_script
from t5x import partitioning
from t5x import utils
""" + _RUN_COMMON + """\
TASK_FEATURE_LENGTHS = %gin.REQUIRED
TRAIN_STEPS = %gin.REQUIRED
MODEL_DIR = %gin.REQUIRED
USE_CACHED_TASKS = True
train_script.train:
  model = %MODEL
  model_dir = %MODEL_DIR
  train_dataset_cfg = @train/utils.DatasetConfig()
  train_eval_dataset_cfg = @train_eval/utils.DatasetConfig()
  checkpoint_cfg = @utils.CheckpointConfig()
  partitioner = @partitioning.ModelBasedPjitPartitioner()
  total_steps = %TRAIN_STEPS
  learning_rate_fn = @utils.create_learning_rate_scheduler()
partitioning.ModelBasedPjitPartitioner:
  num_partitions = 1
  logical_axis_rules = @partitioning.standard_logical_axis_rules()
train/utils.DatasetConfig:
  mixture_or_task_name = %MIXTURE_OR_TASK_NAME
  task_feature_lengths = %TASK_FEATURE_LENGTHS
  split = 'train'
  batch_size = 128
  use_cached = %USE_CACHED_TASKS
  pack = True
  module = %MIXTURE_OR_TASK_MODULE
train_eval/utils.DatasetConfig:
  mixture_or_task_name = %MIXTURE_OR_TASK_NAME
  task_feature_lengths = %TASK_FEATURE_LENGTHS
  split = 'validation'
  batch_size = 128
  use_cached = %USE_CACHED_TASKS
  pack = True
  module = %MIXTURE_OR_TASK_MODULE
utils.CheckpointConfig:
  save = @utils.SaveCheckpointConfig()
  restore = @utils.RestoreCheckpointConfig()
utils.SaveCheckpointConfig.period = 1000
utils.create_learning_rate_scheduler.warmup_steps = 10000
""",
    "t5x/configs/runs/finetune.gin": """\
from __gin__ import dynamic_registration
import __main__ as train_script
from t5x import partitioning
from t5x import utils
""" + _RUN_COMMON + """\
TASK_FEATURE_LENGTHS = %gin.REQUIRED
TRAIN_STEPS = %gin.REQUIRED
MODEL_DIR = %gin.REQUIRED
INITIAL_CHECKPOINT_PATH = %gin.REQUIRED
USE_CACHED_TASKS = True
BATCH_SIZE = 128
EVAL_PERIOD = 1000
train_script.train:
  model = %MODEL
  model_dir = %MODEL_DIR
  train_dataset_cfg = @train/utils.DatasetConfig()
  train_eval_dataset_cfg = @train_eval/utils.DatasetConfig()
  checkpoint_cfg = @utils.CheckpointConfig()
  partitioner = @partitioning.PjitPartitioner()
  total_steps = %TRAIN_STEPS
  eval_period = %EVAL_PERIOD
partitioning.PjitPartitioner:
  num_partitions = 1
  logical_axis_rules = @partitioning.standard_logical_axis_rules()
train/utils.DatasetConfig:
  mixture_or_task_name = %MIXTURE_OR_TASK_NAME
  task_feature_lengths = %TASK_FEATURE_LENGTHS
  split = 'train'
  batch_size = %BATCH_SIZE
  use_cached = %USE_CACHED_TASKS
  pack = True
  module = %MIXTURE_OR_TASK_MODULE
train_eval/utils.DatasetConfig:
  mixture_or_task_name = %MIXTURE_OR_TASK_NAME
  task_feature_lengths = %TASK_FEATURE_LENGTHS
  split = 'validation'
  batch_size = %BATCH_SIZE
  use_cached = %USE_CACHED_TASKS
  pack = True
  module = %MIXTURE_OR_TASK_MODULE
utils.CheckpointConfig:
  save = @utils.SaveCheckpointConfig()
  restore = @utils.RestoreCheckpointConfig()
utils.RestoreCheckpointConfig.path = %INITIAL_CHECKPOINT_PATH
utils.SaveCheckpointConfig.period = 5000
utils.create_learning_rate_scheduler.warmup_steps = 1000
""",
    "t5x/configs/runs/eval.gin": """\
from __gin__ import dynamic_registration
import __main__ as eval_script
from t5x import partitioning
from t5x import utils
""" + _RUN_COMMON + """\
CHECKPOINT_PATH = %gin.REQUIRED
EVAL_OUTPUT_DIR = %gin.REQUIRED
TASK_FEATURE_LENGTHS = None
MIXTURE_OR_TASK_SPLIT = 'test'
eval_script.evaluate:
  model = %MODEL
  dataset_cfg = @utils.DatasetConfig()
  partitioner = @partitioning.PjitPartitioner()
  restore_checkpoint_cfg = @utils.RestoreCheckpointConfig()
  output_dir = %EVAL_OUTPUT_DIR
partitioning.PjitPartitioner:
  num_partitions = 1
  logical_axis_rules = @partitioning.standard_logical_axis_rules()
utils.DatasetConfig:
  mixture_or_task_name = %MIXTURE_OR_TASK_NAME
  task_feature_lengths = %TASK_FEATURE_LENGTHS
  split = %MIXTURE_OR_TASK_SPLIT
  batch_size = 32
  use_cached = False
  pack = False
  module = %MIXTURE_OR_TASK_MODULE
utils.RestoreCheckpointConfig.path = %CHECKPOINT_PATH
""",
    "t5x/configs/runs/infer.gin": """\
from __gin__ import dynamic_registration
import __main__ as infer_script
from t5x import partitioning
from t5x import utils
""" + _RUN_COMMON + """\
TASK_FEATURE_LENGTHS = %gin.REQUIRED
CHECKPOINT_PATH = %gin.REQUIRED
INFER_OUTPUT_DIR = %gin.REQUIRED
MIXTURE_OR_TASK_SPLIT = 'test'
infer_script.infer:
  mode = 'predict'
  model = %MODEL
  output_dir = %INFER_OUTPUT_DIR
  dataset_cfg = @utils.DatasetConfig()
  partitioner = @partitioning.PjitPartitioner()
  restore_checkpoint_cfg = @utils.RestoreCheckpointConfig()
partitioning.PjitPartitioner:
  num_partitions = 1
  logical_axis_rules = @partitioning.standard_logical_axis_rules()
utils.DatasetConfig:
  mixture_or_task_name = %MIXTURE_OR_TASK_NAME
  module = %MIXTURE_OR_TASK_MODULE
  task_feature_lengths = %TASK_FEATURE_LENGTHS
  use_cached = False
  split = %MIXTURE_OR_TASK_SPLIT
  batch_size = 32
  pack = False
utils.RestoreCheckpointConfig.path = %CHECKPOINT_PATH
""",
    "t5x/examples/t5/t5_1_1/base.gin": """\
from __gin__ import dynamic_registration
import seqio
from t5x import adafactor
from t5x import models
from t5x.examples.t5 import network
DROPOUT_RATE = %gin.REQUIRED
VOCABULARY = @seqio.SentencePieceVocabulary()
seqio.SentencePieceVocabulary.sentencepiece_model_file = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
OPTIMIZER = @adafactor.Adafactor()
adafactor.Adafactor:
  decay_rate = 0.8
  step_offset = 0
  logical_factor_rules = @adafactor.standard_logical_factor_rules()
MODEL = @models.EncoderDecoderModel()
models.EncoderDecoderModel:
  module = @network.Transformer()
  input_vocabulary = %VOCABULARY
  output_vocabulary = %VOCABULARY
  optimizer_def = %OPTIMIZER
network.Transformer.config = @network.T5Config()
network.T5Config:
  vocab_size = 32128
  emb_dim = 768
  num_heads = 12
  num_encoder_layers = 12
  num_decoder_layers = 12
  head_dim = 64
  mlp_dim = 2048
  mlp_activations = ('gelu', 'linear')
  dropout_rate = %DROPOUT_RATE
  logits_via_embedding = False
""",
}

ENTRY_POINTS = {"train": "train", "eval": "evaluate", "infer": "infer"}


@contextlib.contextmanager
def installed(stub_dir: pathlib.Path) -> Iterator[None]:
  """Stub modules in sys.modules and T5X's gin files on gin's search path, for the block."""
  for rel, text in T5X_GINS.items():
    path = stub_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  saved_modules = {name: sys.modules.get(name) for name in MODULES}
  saved_paths = list(gin.config._LOCATION_PREFIXES)  # pylint: disable=protected-access
  # Parsing registers the stubs' configurables (t5x.examples.t5.network.T5Config, ...) in gin's
  # registry, which outlives clear_config: left there, a later test's plain `T5Config.d_model`
  # binding in the same process would be ambiguous. The registry is restored on exit.
  registry = gin.config._REGISTRY  # pylint: disable=protected-access
  inverse = gin.config._INVERSE_REGISTRY  # pylint: disable=protected-access
  saved_registry, saved_inverse = dict(registry.items()), dict(inverse)
  sys.modules.update(MODULES)
  gin.clear_config()
  gin.add_config_file_search_path(str(REPO_ROOT))
  gin.add_config_file_search_path(str(stub_dir))
  try:
    yield
  finally:
    gin.clear_config()
    gin.config._LOCATION_PREFIXES[:] = saved_paths  # pylint: disable=protected-access
    registry.clear()
    for selector, info in saved_registry.items():
      registry[selector] = info
    inverse.clear()
    inverse.update(saved_inverse)
    for name, module in saved_modules.items():
      if module is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = module


def parse(gin_file: str, bindings: Sequence[str] = ()) -> None:
  """What `t5x.train --gin_file=FILE --gin.B ...` parses (call inside `installed`)."""
  gin.parse_config_files_and_bindings([gin_file], list(bindings), finalize_config=False,
                                      skip_unknown=False)


def run(entry: str) -> Made:
  """Calls the entry point's stub as T5X's main does: every argument comes from gin."""
  return gin.get_configurable(getattr(MODULES["__main__"], ENTRY_POINTS[entry]))()
