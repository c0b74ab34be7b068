"""Learning-rate schedules and optax optimisers, as T5X and the Flan-T5 recipes use them.

Gin binds these at the edge: `train.learning_rate = @optimizers.schedule()` and
`train.optimizer = @optimizers.adafactor` (no call: the trainer calls it with the schedule).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "linear", "cosine", "rsqrt")


def schedule(kind: str = "constant", base_learning_rate: float = 1e-3, warmup_steps: int = 0,
             total_steps: int | None = None, end_factor: float = 0.0) -> optax.Schedule:
  """A warm-up + decay schedule; the value at step s is the rate used by the update of step s.

  kind:
    constant: linear warm-up from 0 over `warmup_steps`, then `base_learning_rate`.
    linear / cosine: warm-up, then decay to `end_factor * base_learning_rate` at `total_steps`.
    rsqrt: T5X's `rsqrt_decay`: base / sqrt(max(step, warmup_steps)), flat during warm-up (with
      base 1.0 and 10k warm-up steps this is T5's pre-training rate, Adafactor's "relative step").
  """
  if kind not in SCHEDULES:
    raise ValueError(f"unknown schedule {kind!r}; choose from {SCHEDULES}")
  base = float(base_learning_rate)
  warmup = int(warmup_steps)
  if kind == "rsqrt":
    return lambda step: base * jax.lax.rsqrt(
        jnp.maximum(jnp.asarray(step, jnp.float32), float(max(warmup, 1))))
  if kind in ("linear", "cosine"):
    if total_steps is None or total_steps <= warmup:
      raise ValueError(f"a {kind} schedule needs total_steps > warmup_steps ({warmup}); "
                       f"got {total_steps}")
    decay_steps = int(total_steps) - warmup
    end = base * float(end_factor)
    if kind == "linear":
      decay = optax.linear_schedule(base, end, decay_steps)
    else:
      decay = optax.cosine_decay_schedule(base, decay_steps, alpha=float(end_factor))
  else:
    decay = optax.constant_schedule(base)
  if warmup <= 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), decay], [warmup])


def _with_clipping(tx: optax.GradientTransformation,
                   max_grad_norm: float | None) -> optax.GradientTransformation:
  if max_grad_norm is None or max_grad_norm <= 0:
    return tx
  return optax.chain(optax.clip_by_global_norm(float(max_grad_norm)), tx)


def _matrices_only(params: Any) -> Any:
  """Weight-decay mask: decay kernels and embeddings, not norm scales or biases (ndim < 2)."""
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def adamw(learning_rate: optax.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 0.0, decay_vectors: bool = False,
          max_grad_norm: float | None = None) -> optax.GradientTransformation:
  """AdamW with decoupled weight decay (matrices only unless `decay_vectors`) and global-norm
  clipping of the (accumulated) gradient."""
  mask = None if decay_vectors else _matrices_only
  tx = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
  return _with_clipping(tx, max_grad_norm)


def adafactor(learning_rate: optax.ScalarOrSchedule, decay_rate: float = 0.8,
              clipping_threshold: float | None = 1.0, multiply_by_parameter_scale: bool = True,
              factored: bool = True, min_dim_size_to_factor: int = 128,
              momentum: float | None = None, weight_decay_rate: float | None = None,
              epsilon1: float = 1e-30,
              max_grad_norm: float | None = None) -> optax.GradientTransformation:
  """Adafactor as T5X configures it: factored second moments, no momentum, update clipping at 1.0,
  step sizes relative to each parameter's RMS."""
  tx = optax.adafactor(learning_rate, min_dim_size_to_factor=min_dim_size_to_factor,
                       decay_rate=decay_rate,
                       multiply_by_parameter_scale=multiply_by_parameter_scale,
                       clipping_threshold=clipping_threshold, momentum=momentum,
                       weight_decay_rate=weight_decay_rate, eps=epsilon1, factored=factored)
  return _with_clipping(tx, max_grad_norm)


def sgd(learning_rate: optax.ScalarOrSchedule, momentum: float | None = None,
        max_grad_norm: float | None = None) -> optax.GradientTransformation:
  """Plain SGD: the reference the step tests compare exact updates against."""
  return _with_clipping(optax.sgd(learning_rate, momentum=momentum), max_grad_norm)
