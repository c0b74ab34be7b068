"""Small training runs in their own processes, for the kill tests (tests/training/test_kill.py).

  python -m tests.training.kill_worker --zygote

imports JAX, Orbax and the trainer once (no JAX backend yet), then for each JSON list of
arguments read from stdin forks a process running `main(arguments)` and prints its pid, so a run
costs a fork, not an interpreter start (seconds of imports each on a loaded machine). A run,

  MODEL_DIR --total 40 --period 10 --events FILE [--stall_save 20]

trains the toy regression model with the real trainer (`trainer.train_loop`: donated train step,
asynchronous Orbax saves, resume from the newest committed checkpoint), appending one JSON line to
FILE when it starts ({"start": step}) and one when it ends ({"done": step}). `--stall_save STEP`
holds the save of STEP just before Orbax commits it (everything written, the rename not done) and
creates MODEL_DIR.stalled_STEP, so a test can SIGKILL the process while that save is in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import sys
import traceback


def stall_save(model_dir: str, step: int) -> None:
  """Makes Orbax's commit of checkpoint_<step> wait forever (in its background thread)."""
  from orbax.checkpoint._src.path import atomicity

  final_name = f"checkpoint_{step}"
  original = atomicity.AtomicRenameTemporaryPath.finalize

  async def finalize(self, *args, **kwargs):
    if os.path.basename(str(self.get_final())) == final_name:
      with open(f"{model_dir}.stalled_{step}", "w", encoding="utf-8") as f:
        f.write(str(self.get()))
      while True:
        await asyncio.sleep(3600)
    return await original(self, *args, **kwargs)

  atomicity.AtomicRenameTemporaryPath.finalize = finalize


@functools.lru_cache(maxsize=None)
def trainer_and_batches():
  """One trainer per process: its train step compiles once."""
  import jax

  from kard_jax.training import optimizers, partitioning
  from kard_jax.training import trainer as trainer_lib
  from tests.training import toy_models

  batches = toy_models.regression_batches(6)  # repeats: step k reads batch k % 6
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
  trainer = trainer_lib.Trainer(toy_models.Regression(), optimizers.adamw(0.05), 0.05,
                                partitioning.create_mesh((1, 1)),
                                partitioning.standard_logical_axis_rules(), spec)
  return trainer, batches


def run(model_dir: str, total: int, period: int, announce=None):
  from kard_jax.training import checkpoints
  from kard_jax.training import trainer as trainer_lib
  from tests.training import toy_models

  trainer, batches = trainer_and_batches()
  ckpt = checkpoints.Checkpointer(model_dir, period=period, keep=None, use_async=True)
  try:
    return trainer_lib.train_loop(trainer, toy_models.ListInput(batches), total, model_dir,
                                  seed=0, checkpointer=ckpt, show_progress=False,
                                  on_start=announce), trainer
  finally:
    ckpt.close()


def main(argv) -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("model_dir")
  parser.add_argument("--total", type=int, required=True)
  parser.add_argument("--period", type=int, required=True)
  parser.add_argument("--events", required=True)
  parser.add_argument("--stall_save", type=int, default=None)
  args = parser.parse_args(argv)
  if args.stall_save is not None:
    stall_save(args.model_dir, args.stall_save)

  def event(**fields):
    with open(args.events, "a", encoding="utf-8") as f:
      f.write(json.dumps(fields) + "\n")

  result, _ = run(args.model_dir, args.total, args.period,
                  lambda state: event(start=int(state.step)))
  event(done=result.step)
  return 0


def zygote() -> int:
  import jax  # noqa: F401  (imported, not initialised: each child starts its own backend)
  import orbax.checkpoint  # noqa: F401

  from kard_jax.training import checkpoints, trainer  # noqa: F401
  from tests.training import toy_models  # noqa: F401

  signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped as they end
  print(json.dumps({"ready": os.getpid()}), flush=True)
  for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
      signal.signal(signal.SIGCHLD, signal.SIG_DFL)
      code = 1
      try:
        code = main(json.loads(line))
      except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
      finally:
        sys.stderr.flush()
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(zygote() if sys.argv[1:] == ["--zygote"] else main(sys.argv[1:]))
