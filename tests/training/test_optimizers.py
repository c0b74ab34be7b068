"""Schedules against their closed forms; the optimisers' weight-decay mask and clipping."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kard_jax.training import optimizers


def _values(schedule, steps):
  return np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps)))


def test_schedules_match_closed_forms():
  steps = np.arange(0, 31)
  base, warm, total, end = 0.1, 5, 30, 0.2

  def warmup(s):
    return base * s / warm

  lin = _values(optimizers.schedule("linear", base, warm, total, end), steps)
  cos = _values(optimizers.schedule("cosine", base, warm, total, end), steps)
  const = _values(optimizers.schedule("constant", base, warm), steps)
  rsqrt = _values(optimizers.schedule("rsqrt", 1.0, 10), steps)
  for s in steps:
    frac = (s - warm) / (total - warm)
    want_lin = warmup(s) if s < warm else base + (base * end - base) * frac
    cosine = 0.5 * (1 + math.cos(math.pi * frac))
    want_cos = warmup(s) if s < warm else base * (end + (1 - end) * cosine)
    want_const = warmup(s) if s < warm else base
    assert lin[s] == pytest.approx(want_lin, rel=1e-5, abs=1e-7)
    assert cos[s] == pytest.approx(want_cos, rel=1e-5, abs=1e-7)
    assert const[s] == pytest.approx(want_const, rel=1e-5, abs=1e-7)
    assert rsqrt[s] == pytest.approx(1 / math.sqrt(max(s, 10)), rel=1e-6)


def test_schedule_errors():
  with pytest.raises(ValueError, match="unknown schedule"):
    optimizers.schedule("exponential")
  with pytest.raises(ValueError, match="total_steps"):
    optimizers.schedule("cosine", 1.0, warmup_steps=10, total_steps=5)


def test_adamw_decays_matrices_only():
  params = {"kernel": jnp.ones((2, 2)), "scale": jnp.ones((2,))}
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  tx = optimizers.adamw(0.1, weight_decay=0.5)
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  np.testing.assert_allclose(np.asarray(updates["kernel"]), -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(updates["scale"]), 0.0)


def test_global_norm_clipping_applies_before_the_update():
  params = {"w": jnp.zeros((4,))}
  grads = {"w": jnp.full((4,), 10.0)}  # norm 20
  tx = optimizers.sgd(1.0, max_grad_norm=2.0)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(updates["w"])), 2.0, rtol=1e-6)


def test_adafactor_factors_large_matrices_and_moves_parameters():
  params = {"w": jnp.ones((256, 128)), "b": jnp.ones((3,))}
  tx = optimizers.adafactor(1e-2)
  state = tx.init(params)
  shapes = [x.shape for x in jax.tree_util.tree_leaves(state)]
  assert (256,) in shapes and (128,) in shapes and (256, 128) not in shapes  # factored, no momentum
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  assert float(jnp.max(updates["w"])) < 0  # descends
