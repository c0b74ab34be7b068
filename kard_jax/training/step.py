"""The compiled train and eval steps (T5X's trainer.train_step / eval_step, for jax.jit).

One train step = one global batch. With `num_microbatches` > 1 the batch is split and gradients are
accumulated by `lax.scan`, weighting each micro-batch by its loss denominator, so the update equals
the one a single large batch would give. A step whose loss or gradient is not finite leaves the
state unchanged and raises the `nonfinite` flag; the loop stops on it before anything is saved.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from kard_jax.training import models as models_lib
from kard_jax.training import partitioning
from kard_jax.training.train_state import TrainState

Batch = Mapping[str, jax.Array]


def _split_microbatches(batch: Batch, num: int, mesh: Mesh) -> Batch:
  """[B, ...] -> [num, B / num, ...], micro-batch i taking rows i, i + num, ... so that every
  device holding a slice of the batch works on every micro-batch."""
  def split(x):
    if x.shape[0] % num:
      raise ValueError(f"batch size {x.shape[0]} is not divisible by num_microbatches={num}")
    y = x.reshape((x.shape[0] // num, num) + x.shape[1:]).swapaxes(0, 1)
    spec = P(None, "data", *([None] * (y.ndim - 2)))
    return jax.lax.with_sharding_constraint(y, NamedSharding(mesh, spec))
  return jax.tree.map(split, batch)


def _grads_and_metrics(model: models_lib.BaseModel, params, batch: Batch, rng: jax.Array,
                       step: jax.Array, num_microbatches: int, mesh: Mesh):
  grad_fn = jax.value_and_grad(model.loss_fn, has_aux=True)
  if num_microbatches <= 1:
    (_, metrics), grads = grad_fn(params, batch, rng, step)
    return grads, metrics

  micro = _split_microbatches(batch, num_microbatches, mesh)
  abstract_metrics = jax.eval_shape(
      lambda: grad_fn(params, jax.tree.map(lambda x: x[0], micro), rng, step)[0][1])
  zero_grads = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  zero_metrics = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), abstract_metrics)

  def body(carry, xs):
    grads_acc, metrics_acc = carry
    index, mb = xs
    (_, m), g = grad_fn(params, mb, jax.random.fold_in(rng, index), step)
    weight = m[models_lib.DENOMINATOR].astype(jnp.float32)
    grads_acc = jax.tree.map(lambda a, b: a + b.astype(jnp.float32) * weight, grads_acc, g)
    metrics_acc = {k: metrics_acc[k] + (v if models_lib.is_count_metric(k) else v * weight)
                   for k, v in m.items()}
    return (grads_acc, metrics_acc), None

  (grads, sums), _ = jax.lax.scan(body, (zero_grads, zero_metrics),
                                  (jnp.arange(num_microbatches), micro))
  total = sums[models_lib.DENOMINATOR]
  grads = jax.tree.map(lambda g, p: (g / total).astype(p.dtype), grads, params)
  metrics = {k: (v if models_lib.is_count_metric(k) else v / total) for k, v in sums.items()}
  return grads, metrics


def make_train_step(model: models_lib.BaseModel, tx: optax.GradientTransformation,
                    learning_rate: Callable[[jax.Array], jax.Array] | float,
                    mesh: Mesh, rules: partitioning.LogicalAxisRules,
                    num_microbatches: int | None = None) -> Callable[[TrainState, Batch], Any]:
  """(state, batch) -> (state, metrics), not yet compiled (see `compile_train_step`)."""
  num = int(num_microbatches or 1)
  lr_fn = learning_rate if callable(learning_rate) else (lambda _: jnp.asarray(learning_rate))

  def train_step(state: TrainState, batch: Batch):
    with nn.logical_axis_rules(list(rules)):
      rng = jax.random.fold_in(state.rng, state.step)
      grads, metrics = _grads_and_metrics(model, state.params, batch, rng, state.step, num,
                                          mesh)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)

    def apply(params, opt_state):
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    # A non-finite step changes nothing (and the loop stops on its flag).
    new_params, new_opt_state = jax.lax.cond(finite, apply, lambda p, o: (p, o), state.params,
                                             state.opt_state)
    new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt_state)
    metrics = dict(metrics, grad_norm=grad_norm, learning_rate=lr_fn(state.step),
                   nonfinite=jnp.logical_not(finite).astype(jnp.float32))
    return new_state, metrics

  return train_step


def compile_train_step(train_step, state_shardings: TrainState, batch_shardings: Any, mesh: Mesh):
  """jit with explicit shardings; the old state's buffers are donated to the new one."""
  rep = partitioning.replicated(mesh)
  jitted = jax.jit(train_step, in_shardings=(state_shardings, batch_shardings),
                   out_shardings=(state_shardings, rep), donate_argnums=(0,))

  def run(state, batch):
    with jax.set_mesh(mesh):
      return jitted(state, batch)
  return run


def make_eval_step(model: models_lib.BaseModel, mesh: Mesh, rules: partitioning.LogicalAxisRules,
                   param_shardings: Any, batch_shardings: Any):
  """(params, batch) -> {metric: (numerator, denominator)}, compiled."""
  def eval_step(params, batch):
    with nn.logical_axis_rules(list(rules)):
      return model.eval_fn(params, batch)

  jitted = jax.jit(eval_step, in_shardings=(param_shardings, batch_shardings),
                   out_shardings=partitioning.replicated(mesh))

  def run(params, batch):
    with jax.set_mesh(mesh):
      return jitted(params, batch)
  return run
