"""The training loop with small models: non-finite stop, exact resume, init from params, eval."""

import os

import jax
import numpy as np
import pytest

from kard_jax.training import checkpoints, optimizers, partitioning
from kard_jax.training import trainer as trainer_lib
from tests.training import toy_models


def _regression_trainer(batches):
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
  return trainer_lib.Trainer(toy_models.Regression(), optimizers.sgd(0.05), 0.05,
                             partitioning.create_mesh((8, 1)),
                             partitioning.standard_logical_axis_rules(), spec)


def _run(trainer, batches, model_dir, total, period=2, **kwargs):
  ckpt = checkpoints.Checkpointer(str(model_dir), period=period, keep=None, use_async=True)
  try:
    return trainer_lib.train_loop(trainer, toy_models.ListInput(batches), total, str(model_dir),
                                  seed=0, checkpointer=ckpt, show_progress=False, **kwargs)
  finally:
    ckpt.close()


def _steps(model_dir):
  return sorted(int(n.split("_")[1]) for n in os.listdir(model_dir) if n.startswith("checkpoint_"))


def test_non_finite_loss_stops_before_saving(tmp_path):
  batches = toy_models.regression_batches(8, poison_at=4)  # step 5 sees an inf
  trainer = _regression_trainer(batches)
  with pytest.raises(trainer_lib.NonFiniteLossError) as err:
    _run(trainer, batches, tmp_path / "bad", total=8, log_period=10)
  message = str(err.value)
  assert "step 5: non-finite loss" in message and "last good checkpoint is step 4" in message
  assert _steps(tmp_path / "bad") == [2, 4]  # step 6 (the next save point) was never written

  clean = _run(trainer, batches[:4], tmp_path / "clean", total=4)
  kept, step = checkpoints.latest_params(str(tmp_path / "bad"))
  assert step == 4
  np.testing.assert_array_equal(np.asarray(kept["w"]), np.asarray(clean.state.params["w"]))


def test_resume_is_exact_and_finished_runs_do_nothing(tmp_path):
  batches = toy_models.regression_batches(6)  # repeats: step k reads batch k % 6
  trainer = _regression_trainer(batches)
  straight = _run(trainer, batches, tmp_path / "a", total=10)
  _run(trainer, batches, tmp_path / "b", total=4)
  resumed = _run(trainer, batches, tmp_path / "b", total=10)
  assert (resumed.start_step, resumed.step) == (4, 10)
  np.testing.assert_array_equal(np.asarray(resumed.state.params["w"]),
                                np.asarray(straight.state.params["w"]))
  again = _run(trainer, batches, tmp_path / "b", total=10)
  assert again.start_step == again.step == 10 and _steps(tmp_path / "b") == [2, 4, 6, 8, 10]


def test_init_params_from_another_run(tmp_path):
  batches = toy_models.regression_batches(4)
  trainer = _regression_trainer(batches)
  first = _run(trainer, batches, tmp_path / "first", total=2)
  path = trainer_lib.find_params_checkpoint(str(tmp_path / "first"))
  assert path.endswith(os.path.join("checkpoint_2", "params"))
  seen = {}
  _run(trainer, batches, tmp_path / "second", total=1,
       init_params=lambda: checkpoints.restore_params(path, trainer.setup.abstract_state.params,
                                                      trainer.setup.shardings.params),
       on_start=lambda state: seen.update(w=np.asarray(state.params["w"]), step=int(state.step)))
  assert seen["step"] == 0  # parameters only: the new run starts at step 0
  np.testing.assert_array_equal(seen["w"], np.asarray(first.state.params["w"]))
  with pytest.raises(FileNotFoundError):
    trainer_lib.find_params_checkpoint(str(tmp_path / "missing"))


def test_evaluation_sums_numerators_and_denominators(tmp_path):
  """Padded all-zero rows carry no weight; the result is a ratio of sums, not a mean of ratios."""
  batches = toy_models.regression_batches(3)
  trainer = _regression_trainer(batches)
  state = trainer.init_state(seed=0)
  eval_batches = [dict(b) for b in toy_models.regression_batches(3, seed=1)]
  eval_batches[-1]["x"][5:] = 0
  eval_batches[-1]["y"][5:] = 0
  got = trainer.evaluate(state.params, toy_models.ListInput(eval_batches, repeat=False))
  w = np.asarray(state.params["w"])
  errs = np.concatenate([(b["x"] @ w)[:, 0] - b["y"] for b in eval_batches])
  real = np.concatenate([b["y"] != 0 for b in eval_batches])
  assert got["loss"] == pytest.approx(float((errs[real] ** 2).mean()), rel=1e-5)
  one = trainer.evaluate(state.params, toy_models.ListInput(eval_batches, repeat=False),
                         max_batches=1)
  assert one["loss"] == pytest.approx(float((errs[:8] ** 2).mean()), rel=1e-5)
