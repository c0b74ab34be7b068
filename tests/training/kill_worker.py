"""A small training run in its own process, for the kill tests (tests/training/test_kill.py).

  python -m tests.training.kill_worker MODEL_DIR --total 40 --period 10 [--stall_save 20]

It runs the real trainer (`trainer.train_loop`: donated train step, asynchronous Orbax saves,
resume from the newest committed checkpoint) on the toy regression model, printing one JSON line
when it starts ({"start": step}) and one when it ends ({"done": step}). `--stall_save STEP` holds
the save of STEP just before Orbax commits it (everything written, the rename not done) and
creates MODEL_DIR.stalled_STEP, so a test can SIGKILL the process while that save is in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys


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


def main(argv=None) -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("model_dir")
  parser.add_argument("--total", type=int, required=True)
  parser.add_argument("--period", type=int, required=True)
  parser.add_argument("--stall_save", type=int, default=None)
  args = parser.parse_args(argv)
  if args.stall_save is not None:
    stall_save(args.model_dir, args.stall_save)

  def announce(state):
    print(json.dumps({"start": int(state.step)}), flush=True)

  result, _ = run(args.model_dir, args.total, args.period, announce)
  print(json.dumps({"done": result.step}), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
