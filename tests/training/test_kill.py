"""SIGKILL while an asynchronous Orbax save is in flight: the restart resumes from the newest
committed checkpoint (the torn save is skipped, never loaded) and ends bit-identical to an
uninterrupted run. A torn `checkpoint_<step>` that looks final is set aside, never restored.

The runs are the real trainer (donated train step, async saves) on the toy regression model in
tests/training/kill_worker.py, so one kill costs a process start, not a compile of a Transformer.
The killed processes are forked from a zygote that imported everything once. Twenty runs in a row:
  KARD_KILL_TEST_RUNS=20 nice -n 10 .venv/bin/python -m pytest -q -p no:xdist \
      tests/training/test_kill.py -k async_saves
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from kard_jax.training import checkpoints
from tests.conftest import REPO_ROOT
from tests.training import kill_worker

TOTAL, PERIOD = 40, 10
TMP_SUFFIX = ".orbax-checkpoint-tmp"


class Zygote:
  """`kill_worker --zygote`: imports once, forks one training process per `start`."""

  def __init__(self, log_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    self.log_path, self.started = log_path, 0
    self.log = open(log_path, "ab")
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "tests.training.kill_worker", "--zygote"], cwd=REPO_ROOT, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
    assert "ready" in json.loads(self.proc.stdout.readline() or "{}"), self.tail()

  def start(self, model_dir, *extra) -> "Worker":
    self.started += 1
    events = f"{model_dir}.events{self.started}"
    args = [str(model_dir), "--total", str(TOTAL), "--period", str(PERIOD), "--events", events,
            *extra]
    self.proc.stdin.write(json.dumps(args) + "\n")
    self.proc.stdin.flush()
    return Worker(self, json.loads(self.proc.stdout.readline())["pid"], events)

  def close(self):
    self.proc.stdin.close()
    self.proc.wait(timeout=60)
    self.log.close()

  def tail(self) -> str:
    with open(self.log_path, "rb") as f:
      return f.read()[-3000:].decode(errors="replace")


class Worker:
  """One training process forked by the zygote; its events are JSON lines in a file."""

  def __init__(self, zygote, pid, events):
    self.zygote, self.pid, self.events_path = zygote, pid, events

  def alive(self) -> bool:
    try:
      os.kill(self.pid, 0)
    except ProcessLookupError:
      return False
    return True

  def wait_for_file(self, path, timeout=600.0):  # generous: a loaded CI machine, not a hang
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
      assert self.alive(), f"the run ended first:\n{self.zygote.tail()}"
      assert time.monotonic() < deadline, f"{path} never appeared:\n{self.zygote.tail()}"
      time.sleep(0.01)

  def kill(self) -> list[dict]:
    assert self.alive()
    os.kill(self.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while self.alive():  # the zygote reaps it
      assert time.monotonic() < deadline
      time.sleep(0.01)
    return self.events()

  def events(self) -> list[dict]:
    if not os.path.exists(self.events_path):
      return []
    with open(self.events_path, encoding="utf-8") as f:
      return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
  z = Zygote(tmp_path_factory.mktemp("zygote") / "log")
  yield z
  z.close()


def _listing(model_dir):
  return sorted(os.listdir(model_dir))


def _state(trainer, model_dir, step):
  ckpt = checkpoints.Checkpointer(str(model_dir), period=PERIOD, use_async=False)
  try:
    state, meta = ckpt.restore(trainer.setup, step)
  finally:
    ckpt.close()
  return jax.device_get(state), meta


def _assert_identical(a, b):
  leaves_a = jax.tree_util.tree_leaves_with_path(a)
  leaves_b = dict(jax.tree_util.tree_leaves_with_path(b))
  assert len(leaves_a) == len(leaves_b)
  for path, value in leaves_a:
    assert np.array_equal(np.asarray(value), np.asarray(leaves_b[path])), (
        jax.tree_util.keystr(path))


RUNS = int(os.environ.get("KARD_KILL_TEST_RUNS", "1"))


@pytest.mark.parametrize("run", range(RUNS))
def test_kill_during_async_saves_resumes_from_the_newest_committed(tmp_path, zygote, run):
  del run  # KARD_KILL_TEST_RUNS=20 repeats the whole scenario 20 times in a row
  killed = tmp_path / "killed"

  # 1. Killed while the save of step 20 is in flight: written, not committed; 10 is committed.
  worker = zygote.start(killed, "--stall_save", "20")
  worker.wait_for_file(f"{killed}.stalled_20")
  events = worker.kill()
  assert events == [{"start": 0}]
  assert checkpoints.committed_steps(str(killed)) == [10]
  torn = killed / f"checkpoint_20{TMP_SUFFIX}"
  assert torn.is_dir() and (torn / "meta" / "metadata").is_file()  # complete-looking, torn
  assert not (killed / "checkpoint_20").exists()

  # 2. The restart resumes from 10, never from the torn 20; killed again in its final save.
  worker = zygote.start(killed, "--stall_save", str(TOTAL))
  worker.wait_for_file(f"{killed}.stalled_{TOTAL}")
  assert worker.kill() == [{"start": 10}]
  assert checkpoints.committed_steps(str(killed)) == [10, 20, 30]
  assert (killed / f"checkpoint_{TOTAL}{TMP_SUFFIX}").is_dir()

  # 3. The last restart (here, in this process) resumes from 30 and finishes.
  resumed, trainer = kill_worker.run(str(killed), TOTAL, PERIOD)
  assert (resumed.start_step, resumed.step) == (30, TOTAL)
  assert [n for n in _listing(killed) if n.startswith("checkpoint_")] == [
      "checkpoint_10", "checkpoint_20", "checkpoint_30", "checkpoint_40"]  # no tmp left

  # An uninterrupted run ends in exactly the same state, bit for bit.
  reference = tmp_path / "reference"
  result, _ = kill_worker.run(str(reference), TOTAL, PERIOD)
  want, want_meta = _state(trainer, reference, TOTAL)
  got, got_meta = _state(trainer, killed, TOTAL)
  assert want_meta == got_meta and got_meta["batches_consumed"] == TOTAL
  _assert_identical(want, got)
  _assert_identical(jax.device_get(result.state), jax.device_get(resumed.state))
  for step in (10, 20, 30):  # and every checkpoint on the way, the re-saved 20 included
    _assert_identical(_state(trainer, reference, step)[0], _state(trainer, killed, step)[0])


@pytest.mark.parametrize("damage", ["no_commit_file", "no_meta", "wrong_step", "no_commit_time"])
def test_a_torn_checkpoint_that_looks_final_is_set_aside_never_loaded(tmp_path, damage):
  model_dir = tmp_path / "run"
  _, trainer = kill_worker.run(str(model_dir), 20, PERIOD)
  before, _ = _state(trainer, model_dir, 10)
  # A save of step 30 that did not complete, yet named like a committed one (a filesystem
  # without atomic renames, a partial copy): made from the complete step-20 save.
  torn = model_dir / "checkpoint_30"
  shutil.copytree(model_dir / "checkpoint_20", torn)
  if damage == "no_commit_file":
    os.remove(torn / "opt_state" / "commit_success.txt")
  elif damage == "no_meta":
    shutil.rmtree(torn / "meta")
  elif damage == "wrong_step":
    pass  # meta says step 20
  else:
    metadata = json.loads((torn / "_CHECKPOINT_METADATA").read_text())
    del metadata["commit_timestamp_nsecs"]
    (torn / "_CHECKPOINT_METADATA").write_text(json.dumps(metadata))
  shutil.rmtree(model_dir / "checkpoint_20")  # so a wrong pick could not come from 20 by luck
  assert checkpoints.committed_steps(str(model_dir)) == [10]
  assert checkpoints.latest_checkpoint_dir(str(model_dir))[1] == 10

  ckpt = checkpoints.Checkpointer(str(model_dir), period=PERIOD, use_async=False)
  try:
    assert ckpt.latest_step() == 10 and ckpt.all_steps() == [10]
    assert len(ckpt.torn) == 1 and os.path.basename(ckpt.torn[0]).startswith("torn.checkpoint_30.")
    assert not torn.exists()
    state, meta = ckpt.restore(trainer.setup)
  finally:
    ckpt.close()
  assert meta["step"] == 10
  _assert_identical(jax.device_get(state), before)
  # Training resumes from 10 and can save 20 and 30 again.
  result, _ = kill_worker.run(str(model_dir), 30, PERIOD)
  assert result.start_step == 10 and checkpoints.committed_steps(str(model_dir)) == [10, 20, 30]
