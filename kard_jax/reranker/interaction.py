"""Late interaction (ColBERT's MaxSim): each query token finds its best-matching passage token.

score(q, p) = sum over real query tokens i of max over real passage tokens j of <q_i, p_j>.
Dot products, not cosines, as KARD's reranker uses. Pure array functions, so the passage side can
be precomputed once and cached for inference.
"""

from __future__ import annotations

import jax.numpy as jnp

_MASKED = -1e4


def maxsim(q_BxQxD, q_mask_BxQ, p_BxKxPxD, p_mask_BxKxP):
  """Scores K passages per query: returns (B, K)."""
  sim = jnp.einsum("bqd,bkpd->bkqp", q_BxQxD, p_BxKxPxD)
  sim = jnp.where(p_mask_BxKxP[:, :, None, :], sim, _MASKED)
  best = jnp.max(sim, axis=-1)  # (B, K, Q)
  best = jnp.where(q_mask_BxQ[:, None, :], best, 0.0)
  return jnp.sum(best, axis=-1)


def maxsim_shared(q_BxQxD, q_mask_BxQ, p_NxPxD, p_mask_NxP):
  """Scores every query against one shared set of N passages: returns (B, N)."""
  sim = jnp.einsum("bqd,npd->bnqp", q_BxQxD, p_NxPxD)
  sim = jnp.where(p_mask_NxP[None, :, None, :], sim, _MASKED)
  best = jnp.where(q_mask_BxQ[:, None, :], jnp.max(sim, axis=-1), 0.0)
  return jnp.sum(best, axis=-1)
