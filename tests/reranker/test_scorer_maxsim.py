import numpy as np

from kard_jax.reranker import scorer as scorer_lib


def _loop_maxsim(q, qm, p, pm):
  total = 0.0
  for i in range(q.shape[0]):
    if not qm[i]:
      continue
    total += max(float(q[i] @ p[j]) for j in range(p.shape[0]) if pm[j])
  return total


def test_maxsim_matches_explicit_loops_with_padding():
  rng = np.random.default_rng(0)
  B, K, Q, P, D = 2, 3, 5, 7, 4
  q = rng.normal(size=(B, Q, D)).astype(np.float32)
  p = rng.normal(size=(B, K, P, D)).astype(np.float32)
  qm = np.arange(Q)[None, :] < np.array([[3], [5]])
  pm = np.arange(P)[None, None, :] < rng.integers(1, P + 1, size=(B, K, 1))
  got = np.asarray(scorer_lib.maxsim(q, qm, p, pm))
  want = np.array([[_loop_maxsim(q[b], qm[b], p[b, k], pm[b, k]) for k in range(K)] for b in range(B)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # The shared-passage form agrees with the per-query form.
  shared = np.asarray(scorer_lib.maxsim_shared(q, qm, p[0], pm[0]))
  np.testing.assert_allclose(shared[0], got[0], rtol=1e-5, atol=1e-5)
