"""`kard train` end to end on a tiny T5: a (4, 2) mesh matches one device, and a run killed with
SIGKILL and restarted ends bit for bit where an uninterrupted run does.

Both tests build the same single-device program, and a persistent compilation cache shared with the
subprocess lets it be compiled once.
"""

import itertools
import os
import re
import signal
import subprocess
import sys
import time

import gin
import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import PartitionSpec as P

from kard_jax.models import t5
from kard_jax.cli import main as cli
from kard_jax.training import checkpoints, input_pipeline, models, optimizers, partitioning
from kard_jax.training import trainer as trainer_lib
from tests.conftest import REPO_ROOT
from tests.training import tiny_task

LENGTHS = {"inputs": 16, "targets": 16}


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """A persistent compilation cache shared with the subprocess: identical programs compile once."""
  path = str(tmp_path_factory.mktemp("xla_cache"))
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  compilation_cache.set_cache_dir(path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  compilation_cache.reset_cache()
  yield path
  jax.config.update("jax_compilation_cache_dir", old[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
  compilation_cache.reset_cache()


def _tiny_t5() -> models.EncoderDecoderModel:
  """The model gin_configs/models/t5_tiny.gin builds."""
  cfg = t5.T5Config(vocab_size=tiny_task.VOCAB_SIZE, d_model=32, num_heads=4, head_dim=8,
                    num_encoder_layers=2, num_decoder_layers=2, d_ff=64, dropout_rate=0.0)
  return models.EncoderDecoderModel(t5.Transformer(cfg), z_loss=1e-4)


def test_mesh_4x2_matches_one_device(compile_cache):
  cfg = input_pipeline.DatasetConfig(tiny_task.TASK, LENGTHS, batch_size=8)
  inp = cfg.make_input(models.EncoderDecoderModel.FEATURE_CONVERTER_CLS,
                       partitioning.host_shard_info(), training=True, seed=0)
  batches = list(itertools.islice(inp.batches(), 20))
  runs = {}
  for shape in [(4, 2), (1, 1)]:
    lr = optimizers.schedule("constant", 1e-2)
    trainer = trainer_lib.Trainer(_tiny_t5(), optimizers.adamw(lr), lr,
                                  partitioning.create_mesh(shape),
                                  partitioning.standard_logical_axis_rules(), inp.element_spec)
    state = trainer.init_state(seed=0)
    losses = []
    for batch in batches:
      state, metrics = trainer.train_step(state, trainer.global_batch(batch))
      losses.append(float(metrics["loss"]))
    runs[shape] = (losses, state)

  (l42, s42), (l11, s11) = runs[(4, 2)], runs[(1, 1)]
  np.testing.assert_allclose(l42, l11, rtol=0, atol=1e-5)
  assert l42[-1] < l42[0] - 0.5  # it learns
  # Adam divides by sqrt(v): parameters with near-zero gradients amplify rounding differences.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=5e-4),
               jax.device_get(s42.params), jax.device_get(s11.params))

  params = s42.params
  wi = params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]  # (embed, mlp) = (32, 64)
  assert wi.sharding.spec == P(None, "model")
  assert wi.sharding.shard_shape(wi.shape) == (32, 32)
  assert len(wi.sharding.device_set) == 8
  query = params["decoder"]["layers_1"]["self_attention"]["query"]["kernel"]  # (embed, joined_kv)
  assert query.sharding.shard_shape(query.shape) == (32, 16)
  emb = params["token_embedder"]["embedding"]  # (vocab, embed)
  assert emb.sharding.shard_shape(emb.shape) == (32, 32)
  assert len(s11.params["token_embedder"]["embedding"].sharding.device_set) == 1


def _write_gin(path, total_steps, period):
  path.write_text(f"""
from __gin__ import dynamic_registration
from kard_jax.training import optimizers
from kard_jax.training import train as train_script
include 'gin_configs/models/t5_tiny.gin'
include 'gin_configs/runs/finetune.gin'

MIXTURE_OR_TASK_NAME = 'kard_test_reverse'
MIXTURE_OR_TASK_MODULE = 'tests.training.tiny_task'
TASK_FEATURE_LENGTHS = {LENGTHS!r}
BATCH_SIZE = 8
TRAIN_STEPS = {total_steps}
LEARNING_RATE = 1e-2
EVAL_PERIOD = 0
train_script.train.optimizer = @optimizers.adamw
train_script.train.train_eval_dataset_cfg = None
train_script.train.mesh_shape = (1, 1)
train_script.train.checkpoint_period = {period}
train_script.train.keep_checkpoints = 3
train_script.train.log_period = 5
train_script.train.show_progress = False
""")


def _args(gin_file, model_dir):
  return ["train", f"--gin_file={gin_file}", f"--model_dir={model_dir}"]


def _final_params(model_dir):
  params, step = checkpoints.latest_params(str(model_dir))
  return jax.device_get(params), step


def test_sigkill_and_restart_equals_an_uninterrupted_run(tmp_path, compile_cache, capfd):
  total, period = 100, 10
  gin_file = tmp_path / "run.gin"
  _write_gin(gin_file, total, period)

  reference = tmp_path / "reference"
  try:
    assert cli.main(_args(gin_file, reference)) == 0
  finally:
    gin.clear_config()
  assert sorted(os.listdir(reference)) == ["checkpoint_100", "checkpoint_80", "checkpoint_90",
                                           "config.gin", "logs", "model_config.json", "train"]

  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=compile_cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # a newcomer's shell: the console must stay quiet anyway
  cmd = [sys.executable, "-m", "kard_jax"] + _args(gin_file, tmp_path / "killed")
  log = open(tmp_path / "killed.log", "wb")
  proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
  first = tmp_path / "killed" / f"checkpoint_{period}"
  deadline = time.time() + 300
  while not first.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  log.close()
  console = (tmp_path / "killed.log").read_text(errors="replace")
  out = console[-3000:]
  assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{out}"
  _assert_library_logs_in_file_only(console, tmp_path / "killed")
  killed_at = max(int(n.split("_")[1]) for n in os.listdir(tmp_path / "killed")
                  if n.startswith("checkpoint_") and "tmp" not in n)
  assert period <= killed_at < total

  try:  # the restart runs here: the same command, in this process
    assert cli.main(_args(gin_file, tmp_path / "killed")) == 0
  finally:
    gin.clear_config()
  assert f"trained from step {killed_at} to step {total}" in capfd.readouterr().err

  want, want_step = _final_params(reference)
  got, got_step = _final_params(tmp_path / "killed")
  assert want_step == got_step == total
  flat_want = jax.tree_util.tree_leaves_with_path(want)
  flat_got = dict(jax.tree_util.tree_leaves_with_path(got))
  assert len(flat_want) == len(flat_got)
  for path, value in flat_want:
    assert np.array_equal(value, flat_got[path]), jax.tree_util.keystr(path)


def _assert_library_logs_in_file_only(console: str, model_dir):
  """The console shows no absl/TensorFlow/XLA log line (Python's absl format, or C++'s
  "W1207 05:20:00.123 ..." and TensorFlow's start-up notice); the run's log file holds SeqIO's
  warning."""
  library_line = re.compile(r"^(WARNING|INFO|ERROR):absl:|^[IWEF]\d{4} \d\d:\d\d:\d\d|"
                            r"^WARNING: All log messages before absl::InitializeLog", re.M)
  assert not library_line.search(console), console
  (log,) = (model_dir / "logs").glob("train-*.log")
  text = log.read_text()
  assert "WARNING absl: Using an uncached FunctionDataset for training" in text, text[-3000:]
