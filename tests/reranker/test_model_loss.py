import numpy as np
import pytest
import torch

from kard_jax.reranker import model as model_lib


def test_kl_matches_torch_kldiv():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(3, 8)).astype(np.float32) * 50
  targets = rng.normal(size=(3, 8)).astype(np.float32) * 5
  ours = model_lib.kl_loss(scores, targets, tau_model=40.0, tau_target=2.0)
  ref = torch.nn.KLDivLoss(reduction="batchmean")(
      torch.log_softmax(torch.tensor(scores) / 40.0, -1), torch.softmax(torch.tensor(targets) / 2.0, -1))
  np.testing.assert_allclose(float(ours), float(ref), rtol=1e-5, atol=1e-6)


def test_kl_ignores_masked_candidates():
  scores = np.array([[1.0, 2.0, 3.0, 99.0]], np.float32)
  targets = np.array([[0.5, 1.0, 4.0, -99.0]], np.float32)
  mask = np.array([[True, True, True, False]])
  full = model_lib.kl_loss(scores[:, :3], targets[:, :3], 1.0, 1.0)
  masked = model_lib.kl_loss(scores, targets, 1.0, 1.0, mask)
  np.testing.assert_allclose(float(masked), float(full), rtol=1e-6)


def test_kl_is_zero_when_distributions_match():
  t = np.array([[3.0, 1.0, -2.0]], np.float32)
  assert abs(float(model_lib.kl_loss(t * 10.0, t, tau_model=10.0, tau_target=1.0))) < 1e-6


def test_cross_entropy_targets_the_rationale_top_passage():
  scores = np.array([[0.0, 5.0, 0.0]], np.float32)
  targets = np.array([[1.0, 9.0, 2.0]], np.float32)
  ref = torch.nn.functional.cross_entropy(torch.tensor(scores), torch.tensor([1]))
  np.testing.assert_allclose(float(model_lib.cross_entropy_loss(scores, targets, 1.0)), float(ref),
                             rtol=1e-6)


@pytest.mark.parametrize("start,end", [(1.0, 0.05), (100.0, 4.0), (0.5, 2.0)])
def test_temperatures_stay_positive_and_between_endpoints(start, end):
  sched = model_lib.TemperatureSchedule(start, end, steps=1000)
  values = np.array([float(sched(s)) for s in range(0, 1500, 7)])
  assert np.all(values > 0)
  lo, hi = min(start, end), max(start, end)
  assert np.all(values >= lo * (1 - 1e-5)) and np.all(values <= hi * (1 + 1e-5))
  np.testing.assert_allclose(float(sched(0)), start, rtol=1e-5)
  np.testing.assert_allclose(float(sched(1000)), end, rtol=1e-5)
  np.testing.assert_allclose(float(sched(5000)), end, rtol=1e-5)
  assert np.all(np.diff(values) <= 1e-6) if end < start else np.all(np.diff(values) >= -1e-6)


def test_official_annealing_would_go_negative_where_ours_does_not():
  """The official ramp with its default starts crosses zero early; ours never does."""
  total = 1000
  t = np.arange(total) / total
  ramp = 2 / (1 + np.exp(-10 * t)) - 1
  official_tau, official_model_tau = 1.0 - 4.0 * ramp, 100.0 - 400.0 * ramp
  first_negative = np.argmax(official_model_tau < 0)
  assert 0 < first_negative < 0.06 * total and np.argmax(official_tau < 0) < 0.06 * total
  ours = model_lib.TemperatureSchedule(100.0, 5.0, steps=total)
  assert min(float(ours(s)) for s in range(total)) > 0


def test_schedule_rejects_non_positive():
  with pytest.raises(ValueError, match="positive"):
    model_lib.TemperatureSchedule(1.0, 0.0)
