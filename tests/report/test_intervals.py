"""The interval math against independent references: scipy's binomial test (Wilson) and
Student-t interval, and the standard library's mean and standard deviation."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from kard_jax.report import intervals


@pytest.mark.parametrize("correct,total", [(0, 10), (3, 10), (45, 150), (150, 150), (1, 1),
                                           (97, 200)])
def test_wilson_matches_scipy(correct, total):
  ref = stats.binomtest(correct, total).proportion_ci(confidence_level=0.95, method="wilson")
  lo, hi = intervals.wilson(correct, total)
  assert lo == pytest.approx(100 * ref.low, abs=1e-9)
  assert hi == pytest.approx(100 * ref.high, abs=1e-9)
  assert lo <= 100 * correct / total <= hi


def test_wilson_rejects_impossible_counts():
  with pytest.raises(ValueError):
    intervals.wilson(3, 0)
  with pytest.raises(ValueError):
    intervals.wilson(11, 10)


@pytest.mark.parametrize("values", [[61.3, 58.0, 64.7], [20.0, 25.5], [33.3, 31.0, 40.0, 29.5, 35.0]])
def test_t_interval_matches_scipy(values):
  mean = statistics.fmean(values)
  sem = statistics.stdev(values) / math.sqrt(len(values))
  ref = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
  lo, hi = intervals.t_interval(values)
  assert (lo, hi) == pytest.approx(ref, abs=1e-9)


def test_t_interval_needs_two_values():
  assert intervals.t_interval([50.0]) is None


def _seed(seed, correct, counts):
  return {"seed": seed, "correct": correct, "counts": counts,
          "accuracy": {g: 100.0 * correct[g] / counts[g] for g in counts}}


def test_aggregate_several_seeds_is_the_t_interval_of_the_per_seed_accuracies():
  counts = {"all": 200, "unseen": 150, "seen": 50}
  per_seed = [_seed(0, {"all": 120, "unseen": 95, "seen": 25}, counts),
              _seed(1, {"all": 110, "unseen": 80, "seen": 30}, counts),
              _seed(2, {"all": 131, "unseen": 99, "seen": 32}, counts)]
  agg = intervals.aggregate(per_seed)
  assert agg["interval_kind"] == "t over 3 seeds"
  for g in counts:
    values = [s["accuracy"][g] for s in per_seed]
    assert agg["accuracy"][g] == pytest.approx(statistics.fmean(values))
    sem = statistics.stdev(values) / math.sqrt(3)
    ref = stats.t.interval(0.95, 2, loc=statistics.fmean(values), scale=sem)
    assert agg["interval"][g] == pytest.approx(ref, abs=0.006)  # rounded to 2 decimals
  for s, entry in zip(per_seed, agg["seeds"]):
    for g in counts:
      ref = stats.binomtest(s["correct"][g], counts[g]).proportion_ci(method="wilson")
      assert entry["wilson"][g] == pytest.approx([100 * ref.low, 100 * ref.high], abs=0.006)


def test_aggregate_one_seed_falls_back_to_wilson():
  agg = intervals.aggregate([_seed(7, {"all": 30}, {"all": 40})])
  assert agg["interval_kind"] == "Wilson"
  assert agg["accuracy"]["all"] == 75.0
  assert agg["interval"]["all"] == agg["seeds"][0]["wilson"]["all"]
  assert agg["seeds"][0]["seed"] == 7
