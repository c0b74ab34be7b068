"""The reranker's objective: match the candidate distribution BM25 gives under the rationale.

KARD's reranker sees only the question, yet is trained so that softmax(score / tau_model) over a
candidate list mimics softmax(bm25(rationale, passage) / tau_target). Both temperatures follow an
explicit schedule that stays strictly positive: the official code's annealing
(tau = tau0 - 4 * ramp, tau_model = tau_model0 - 400 * ramp, with ramp = 2 / (1 + exp(-10 t)) - 1)
crosses zero after about 5% of training for its default start values (1.0 and 100.0), flipping the
sign of the objective. Here a temperature moves geometrically from `start` to `end` (both > 0), so
it is positive at every step by construction.

Defaults (gin_configs/reranker/base.gin), chosen on StrategyQA with MiniLM: tau_target = 4 (held
constant), tau_model from 50 to 20. Among 8 sampled candidates the rationale's BM25 scores spread by
~10 (std) and the untrained MaxSim scores by ~110. tau_target = 4 leaves the targets ~0.8 nats of
entropy (uniform: 2.08), so the order below the top passage still teaches something; KARD's
tau_target = 1 is nearly one-hot (0.23 nats) and, tried against 4 with the compressor alone, gave
lower recall@5 (0.436 vs 0.444 of the golden sentences). tau_model = 50 gives the untrained scorer
about the targets' entropy, so training does not start by undoing a large KL; annealing it to 20
lets the scorer sharpen late without inflating its weights.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class TemperatureSchedule:
  """Geometric interpolation from `start` to `end` over `steps`, then constant at `end`.

  The ramp has the official sigmoid shape (fast early, flat late) but acts on log(tau), so every
  value lies between `start` and `end` and is therefore positive.
  """

  start: float
  end: float
  steps: int = 1

  def __post_init__(self):
    if not (self.start > 0 and self.end > 0):
      raise ValueError(f"temperatures must be positive, got start={self.start}, end={self.end}")
    if self.steps < 1:
      raise ValueError(f"steps must be >= 1, got {self.steps}")

  def __call__(self, step) -> jax.Array:
    t = jnp.clip(jnp.asarray(step, jnp.float32) / self.steps, 0.0, 1.0)
    ramp = (2.0 / (1.0 + jnp.exp(-10.0 * t)) - 1.0) / (2.0 / (1.0 + jnp.exp(-10.0)) - 1.0)
    log_tau = (1.0 - ramp) * jnp.log(self.start) + ramp * jnp.log(self.end)
    return jnp.exp(log_tau)


def _masked(x: jax.Array, mask: jax.Array | None) -> jax.Array:
  return x if mask is None else jnp.where(mask, x, NEG_INF)


def kl_per_example(scores_BxK: jax.Array, targets_BxK: jax.Array, tau_model, tau_target,
                   mask_BxK: jax.Array | None = None) -> jax.Array:
  """KL(softmax(targets/tau_target) || softmax(scores/tau_model)) of each row: [B].

  `mask` marks real candidates (a list may be shorter than K); masked ones get zero probability.
  """
  log_p = jax.nn.log_softmax(_masked(targets_BxK / tau_target, mask_BxK), axis=-1)
  log_q = jax.nn.log_softmax(_masked(scores_BxK / tau_model, mask_BxK), axis=-1)
  p = jnp.exp(log_p)
  terms = jnp.where(p > 0, p * (log_p - log_q), 0.0)
  return jnp.sum(terms, axis=-1)


def kl_loss(scores_BxK: jax.Array, targets_BxK: jax.Array, tau_model, tau_target,
            mask_BxK: jax.Array | None = None) -> jax.Array:
  """Mean over the batch of `kl_per_example` (torch's KLDivLoss with reduction="batchmean")."""
  return jnp.mean(kl_per_example(scores_BxK, targets_BxK, tau_model, tau_target, mask_BxK))


def cross_entropy_per_example(scores_BxK: jax.Array, targets_BxK: jax.Array, tau_model,
                              mask_BxK: jax.Array | None = None) -> jax.Array:
  """-log softmax(scores/tau_model)[top] of each row: [B]; `top` is the candidate BM25 ranks
  first under the rationale (the hard label of KARD's default "ce" loss)."""
  label = jnp.argmax(_masked(targets_BxK, mask_BxK), axis=-1)
  log_q = jax.nn.log_softmax(_masked(scores_BxK / tau_model, mask_BxK), axis=-1)
  return -jnp.take_along_axis(log_q, label[:, None], axis=-1)[:, 0]


def cross_entropy_loss(scores_BxK: jax.Array, targets_BxK: jax.Array, tau_model,
                       mask_BxK: jax.Array | None = None) -> jax.Array:
  """Cross-entropy towards the candidate BM25 ranks first under the rationale (the hard label)."""
  return jnp.mean(cross_entropy_per_example(scores_BxK, targets_BxK, tau_model, mask_BxK))
