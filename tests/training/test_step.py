"""The compiled train step: gradient accumulation, per-step dropout keys, non-finite detection."""

import jax
import numpy as np
import pytest

from kard_jax.training import models, optimizers, partitioning, trainer as trainer_lib
from tests.training import toy_models

RULES = partitioning.standard_logical_axis_rules()


def _trainer(model, tx, batch, mesh_shape=(4, 2), num_microbatches=None, lr=1e-2):
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  return trainer_lib.Trainer(model, tx, lr, partitioning.create_mesh(mesh_shape), RULES, spec,
                             num_microbatches)


def test_gradient_accumulation_equals_the_large_batch_step():
  """Four micro-batches with different numbers of real tokens give the one-batch update."""
  model = models.DecoderOnlyModel(toy_models.TinyDecoder(), z_loss=1e-3, label_smoothing=0.1)
  batch = toy_models.token_batches(1, batch_size=16)[0]
  results = []
  for num in (None, 4):
    t = _trainer(model, optimizers.adamw(1e-2), batch, num_microbatches=num)
    state = t.init_state(seed=0)
    initial = jax.device_get(state.params)
    state, metrics = t.train_step(state, t.global_batch(batch))
    results.append((jax.device_get(state.params), jax.device_get(metrics)))
  (p1, m1), (p4, m4) = results
  assert not np.array_equal(p1["mlp"], initial["mlp"])
  for name in ("loss", "z_loss", "accuracy", "num_target_tokens", "loss_denominator", "grad_norm"):
    np.testing.assert_allclose(m4[name], m1[name], rtol=1e-5, err_msg=name)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), p4, p1)

  constant = models.DecoderOnlyModel(toy_models.TinyDecoder(), loss_normalizing_factor=1000.0)
  with pytest.raises(ValueError, match="gradient accumulation"):
    _trainer(constant, optimizers.adamw(1e-2), batch, num_microbatches=4)


def test_dropout_key_changes_every_step_and_is_reproducible():
  model = models.DecoderOnlyModel(toy_models.TinyDecoder(dropout_rate=0.5))
  batch = toy_models.token_batches(1)[0]
  t = _trainer(model, optimizers.sgd(0.0), batch, mesh_shape=(8, 1), lr=0.0)

  def losses(seed):
    state, out = t.init_state(seed), []
    for _ in range(3):
      state, m = t.train_step(state, t.global_batch(batch))
      out.append(float(m["loss"]))
    return out

  first = losses(0)
  assert len(set(first)) == 3  # same parameters and batch: only the dropout mask differs
  assert losses(0) == first
  assert losses(1) != first


def test_non_finite_step_is_flagged_and_leaves_the_state_unchanged():
  model = toy_models.Regression()
  good, bad = toy_models.regression_batches(2, poison_at=1)
  t = _trainer(model, optimizers.sgd(0.1), good, mesh_shape=(8, 1))
  state, m = t.train_step(t.init_state(0), t.global_batch(good))
  assert float(m["nonfinite"]) == 0
  before = jax.device_get(state.params)
  state, m = t.train_step(state, t.global_batch(bad))
  assert float(m["nonfinite"]) == 1
  np.testing.assert_array_equal(jax.device_get(state.params)["w"], before["w"])
