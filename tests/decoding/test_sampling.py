"""Top-k / top-p masks against a numpy sort-based reference; sampling reproducibility and law."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kard_jax.decoding import sampling


def np_top_k(logits: np.ndarray, k: int) -> np.ndarray:
  keep = np.zeros(logits.shape, bool)
  for r, row in enumerate(logits):
    keep[r, np.argsort(-row, kind="stable")[:k]] = True  # stable: equal logits, lower id first
  return keep


def np_top_p(logits: np.ndarray, p: float) -> np.ndarray:
  keep = np.zeros(logits.shape, bool)
  for r, row in enumerate(logits.astype(np.float64)):
    order = np.argsort(-row, kind="stable")
    probs = np.exp(row[order] - row.max())
    probs /= probs.sum()
    n = int(np.searchsorted(np.cumsum(probs), p)) + 1  # smallest prefix with sum >= p
    keep[r, order[:max(1, min(n, len(row)))]] = True
  return keep


@pytest.mark.parametrize("k", [1, 3, 17, 40])
def test_top_k_keeps_exactly_k_and_breaks_ties_by_lower_id(k):
  r = np.random.default_rng(k)
  logits = r.integers(-3, 3, size=(6, 40)).astype(np.float32)  # many ties at the boundary
  got = np.asarray(sampling.top_k_mask(jnp.asarray(logits), k))
  np.testing.assert_array_equal(got, np_top_k(logits, k))
  assert (got.sum(-1) == k).all()


def test_top_p_matches_sorted_reference_away_from_float_boundaries():
  r = np.random.default_rng(0)
  logits = (r.normal(size=(8, 50)) * 2).astype(np.float32)
  for row_logits in logits:
    probs = np.sort(np.exp(row_logits - row_logits.max()))[::-1]
    cum = np.cumsum(probs / probs.sum())
    # Thresholds half-way between consecutive cumulative sums, so float32 rounding cannot matter.
    for p in [(cum[i] + cum[i + 1]) / 2 for i in (0, 3, 10, 30)]:
      got = np.asarray(sampling.top_p_mask(jnp.asarray(row_logits[None]), float(p)))
      np.testing.assert_array_equal(got, np_top_p(row_logits[None], float(p)))


def test_top_p_always_keeps_the_best_token():
  logits = jnp.asarray([[0.0, 5.0, 1.0], [2.0, 2.0, 2.0]])
  np.testing.assert_array_equal(np.asarray(sampling.top_p_mask(logits, 0.0)),
                                [[False, True, False], [True, False, False]])
  assert np.asarray(sampling.top_p_mask(logits, 1.0)).all()


def test_filter_logits_masks_exactly_and_keeps_kept_values():
  r = np.random.default_rng(1)
  logits = (r.normal(size=(4, 30)) * 3).astype(np.float32)
  out = np.asarray(sampling.filter_logits(jnp.asarray(logits), temperature=0.5, top_k=7,
                                          top_p=0.8))
  keep_k = np_top_k(logits / 0.5, 7)
  masked_k = np.where(keep_k, logits / 0.5, -np.inf)
  keep = keep_k & np_top_p(masked_k, 0.8)
  np.testing.assert_array_equal(out > np.finfo(np.float32).min, keep)
  np.testing.assert_allclose(out[keep], (logits / 0.5)[keep], rtol=1e-6)


def test_sample_reproduces_with_a_fixed_key_and_differs_with_another():
  logits = jnp.asarray(np.random.default_rng(2).normal(size=(64, 100)), jnp.float32)
  a = sampling.sample(jax.random.key(3), logits, top_k=20, top_p=0.9)
  b = sampling.sample(jax.random.key(3), logits, top_k=20, top_p=0.9)
  c = sampling.sample(jax.random.key(4), logits, top_k=20, top_p=0.9)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert (np.asarray(a) != np.asarray(c)).any()


@pytest.mark.parametrize("top_k,top_p", [(3, 1.0), (0, 0.7), (4, 0.75)])
def test_sample_draws_from_the_filtered_distribution(top_k, top_p):
  logits = np.log(np.array([0.30, 0.25, 0.20, 0.15, 0.06, 0.04], np.float32))
  keep = np.ones(6, bool)
  if top_k:
    keep &= np_top_k(logits[None], top_k)[0]
  keep &= np_top_p(np.where(keep, logits, -np.inf)[None], top_p)[0]
  want = np.where(keep, np.exp(logits), 0)
  want /= want.sum()
  n = 20000
  draws = sampling.sample(jax.random.key(0), jnp.tile(jnp.asarray(logits), (n, 1)), top_k=top_k,
                          top_p=top_p)
  freq = np.bincount(np.asarray(draws), minlength=6) / n
  assert (freq[~keep] == 0).all()
  np.testing.assert_allclose(freq, want, atol=4 * np.sqrt(0.25 / n))
