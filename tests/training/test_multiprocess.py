"""`kard train` as 2 processes on localhost, 4 CPU devices each, on a (4, 2) mesh.

Each process runs the same command with its own --process_id; they join through
`jax.distributed.initialize` (CPU collectives over gloo), read their own input shard, save one
Orbax checkpoint together, and resume from it. Checked against one process with 8 devices reading
the same global batches (`shard_union.ShardUnion`), and a killed process must stop the survivor
within the heartbeat timeout.

gloo gives the processes 30 s to meet when a collective is first used: on a machine so loaded that
two processes drift further apart, the first group fails with "Gloo context initialization failed".
"""

import os
import signal
import socket
import subprocess
import sys
import time

import gin
import jax
import numpy as np
import pytest

from kard_jax.cli import main as cli
from kard_jax.training import checkpoints
from tests.conftest import REPO_ROOT

HEARTBEAT_S = 5  # the killed run's; the others use 60 (a loaded machine must not trip it)
PERIOD = 2


def _write_gin(path, union: bool):
  dataset = ("train_script.train.train_dataset_cfg = @shard_union.ShardUnion()\n"
             "shard_union.ShardUnion.inner = @train/input_pipeline.DatasetConfig()\n"
             "shard_union.ShardUnion.num_shards = 2\n") if union else ""
  path.write_text(f"""
from __gin__ import dynamic_registration
from kard_jax.training import input_pipeline
from kard_jax.training import train as train_script
from tests.training import shard_union
include 'gin_configs/models/t5_tiny.gin'
include 'gin_configs/runs/finetune.gin'

MIXTURE_OR_TASK_NAME = 'kard_test_reverse'
MIXTURE_OR_TASK_MODULE = 'tests.training.tiny_task'
TASK_FEATURE_LENGTHS = {{'inputs': 16, 'targets': 16}}
BATCH_SIZE = 8
LEARNING_RATE = 1e-2
EVAL_PERIOD = 0
train_script.train.train_eval_dataset_cfg = None
train_script.train.mesh_shape = (4, 2)
train_script.train.checkpoint_period = {PERIOD}
train_script.train.keep_checkpoints = 3
train_script.train.log_period = 1
train_script.train.show_progress = False
{dataset}""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


class _Group:
  """Two `kard train` processes on localhost, 4 virtual CPU devices each."""

  def __init__(self, tmp_path, name, gin_file, model_dir, steps, cache_dir, heartbeat_s=60):
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=str(REPO_ROOT), JAX_COMPILATION_CACHE_DIR=cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", PYTHONUNBUFFERED="1")
    for var in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS"):
      env.pop(var, None)
    self.logs = [tmp_path / f"{name}_{i}.log" for i in range(2)]
    self.procs = []
    for i in range(2):
      cmd = [sys.executable, "-m", "kard_jax", "train", f"--gin_file={gin_file}",
             f"--model_dir={model_dir}", f"--gin.TRAIN_STEPS={steps}", "--num_processes=2",
             f"--process_id={i}", f"--coordinator_address=localhost:{port}",
             f"--heartbeat_timeout_s={heartbeat_s}", "--initialization_timeout_s=60"]
      with open(self.logs[i], "wb") as log:
        self.procs.append(subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log,
                                           stderr=subprocess.STDOUT))

  def log(self, i) -> str:
    return self.logs[i].read_text(errors="replace")

  def wait(self, timeout=600) -> list[int]:
    deadline = time.time() + timeout
    for p in self.procs:
      p.wait(timeout=max(deadline - time.time(), 1))
    return [p.returncode for p in self.procs]

  def kill_all(self):
    for p in self.procs:
      if p.poll() is None:
        p.kill()
        p.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Multi-process: steps 0-2, then both processes restarted for steps 2-4. Reference: one
  process, 8 devices, steps 0-4 on the same global batches."""
  tmp = tmp_path_factory.mktemp("multiprocess")
  cache = str(tmp / "xla_cache")
  _write_gin(tmp / "multi.gin", union=False)
  _write_gin(tmp / "union.gin", union=True)
  groups = {}
  try:
    for name, steps in (("first", PERIOD), ("restart", 2 * PERIOD)):
      group = _Group(tmp, name, tmp / "multi.gin", tmp / "multi", steps, cache)
      groups[name] = group
      codes = group.wait()
      assert codes == [0, 0], f"{name}: exit codes {codes}\n{group.log(0)[-3000:]}\n" \
                              f"{group.log(1)[-3000:]}"
  finally:
    for group in groups.values():
      group.kill_all()
  try:
    assert cli.main(["train", f"--gin_file={tmp / 'union.gin'}",
                     f"--model_dir={tmp / 'single'}", f"--gin.TRAIN_STEPS={2 * PERIOD}"]) == 0
  finally:
    gin.clear_config()
  return tmp, groups


def _params(model_dir, step):
  folder = os.path.join(model_dir, f"checkpoint_{step}", "params")
  return jax.device_get(checkpoints.restore_params(folder))


def _assert_close(want, got):
  flat_want = jax.tree_util.tree_leaves_with_path(want)
  flat_got = dict(jax.tree_util.tree_leaves_with_path(got))
  assert len(flat_want) == len(flat_got) > 10
  for path, value in flat_want:
    np.testing.assert_allclose(flat_got[path], value, rtol=0, atol=2e-5,
                               err_msg=jax.tree_util.keystr(path))


def test_two_processes_match_one_process_with_eight_devices(runs):
  tmp, groups = runs
  first = groups["first"]
  assert "trained from step 0 to step 2" in first.log(0)
  assert "trained from step" not in first.log(1)  # only process 0 reports
  want, got = _params(tmp / "single", PERIOD), _params(tmp / "multi", PERIOD)
  _assert_close(want, got)
  # Not trivially equal: the parameters moved from their initial values.
  assert not np.allclose(want["decoder"]["logits_dense"]["kernel"],
                         _params(tmp / "single", 2 * PERIOD)["decoder"]["logits_dense"]["kernel"])


def test_both_processes_restart_from_the_checkpoint_and_agree(runs):
  tmp, groups = runs
  assert f"trained from step {PERIOD} to step {2 * PERIOD}" in groups["restart"].log(0)
  _assert_close(_params(tmp / "single", 2 * PERIOD), _params(tmp / "multi", 2 * PERIOD))


def test_a_killed_process_stops_the_other_within_the_heartbeat_timeout(runs, tmp_path):
  tmp, _ = runs
  model_dir = tmp_path / "killed"
  group = _Group(tmp_path, "killed", tmp / "multi.gin", model_dir, 100000, str(tmp / "xla_cache"),
                 heartbeat_s=HEARTBEAT_S)
  try:
    deadline = time.time() + 600
    while not (model_dir / f"checkpoint_{PERIOD}").exists() and time.time() < deadline:
      assert all(p.poll() is None for p in group.procs), group.log(0)[-3000:]
      time.sleep(0.05)
    assert (model_dir / f"checkpoint_{PERIOD}").exists(), group.log(0)[-3000:]
    group.procs[1].send_signal(signal.SIGKILL)
    killed = time.time()
    try:
      group.procs[0].wait(timeout=HEARTBEAT_S + 30)
    except subprocess.TimeoutExpired:
      pytest.fail(f"process 0 still running {HEARTBEAT_S + 30} s after process 1 was killed")
    took = time.time() - killed
  finally:
    group.kill_all()
  log = group.log(0)
  assert group.procs[0].returncode != 0
  assert "JAX distributed service detected fatal errors" in log, log[-3000:]
  assert "stopped sending heartbeats" in log, log[-3000:]
  assert took < HEARTBEAT_S + 30
