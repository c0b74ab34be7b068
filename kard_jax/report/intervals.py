"""95% intervals for accuracies: binomial (Wilson score) per seed, Student-t over seeds.

An accuracy measured once, on n questions, is a binomial proportion: its interval is Wilson's
score interval (well behaved near 0% and 100%, unlike mean ± 1.96·se). Accuracies of several
training seeds on the same questions are a sample of the training procedure's outcomes: their
interval is the Student-t interval of the mean (n - 1 degrees of freedom). Percentages in, out.

  wilson(correct=45, total=150)          # (lo, hi) in %
  t_interval([61.3, 58.0, 64.7])         # (lo, hi) in %, None for one value
  aggregate([{"seed": 0, "accuracy": {...}, "correct": {...}, "counts": {...}}, ...])
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

CONFIDENCE = 0.95


def _z(confidence: float) -> float:
  return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def _t(confidence: float, df: int) -> float:
  from scipy import stats  # pylint: disable=import-outside-toplevel  (a JAX dependency)

  return float(stats.t.ppf(0.5 + confidence / 2, df))


def wilson(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
  """Wilson score interval, in %, of `correct` successes out of `total` trials."""
  if total <= 0:
    raise ValueError("an interval needs at least one trial")
  if not 0 <= correct <= total:
    raise ValueError(f"correct={correct} is outside [0, total={total}]")
  z = _z(confidence)
  p = correct / total
  denom = 1 + z * z / total
  centre = (p + z * z / (2 * total)) / denom
  half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
  lo = 0.0 if correct == 0 else max(0.0, centre - half)  # exact ends, no rounding residue
  hi = 1.0 if correct == total else min(1.0, centre + half)
  return 100.0 * lo, 100.0 * hi


def t_interval(values: Sequence[float],
               confidence: float = CONFIDENCE) -> tuple[float, float] | None:
  """Student-t interval of the mean of `values` (None for fewer than two values)."""
  if len(values) < 2:
    return None
  mean = statistics.fmean(values)
  half = _t(confidence, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
  return mean - half, mean + half


def aggregate(per_seed: Sequence[Mapping[str, Any]],
              confidence: float = CONFIDENCE) -> dict[str, Any]:
  """Mean accuracy per group over seeds, with its interval.

  Each entry: {"seed", "accuracy": {group: %}, "correct": {group: k}, "counts": {group: n}}.
  Returns {"accuracy": {group: mean %}, "interval": {group: [lo, hi]}, "interval_kind":
  "t over N seeds" (two or more seeds) or "Wilson" (one seed: the binomial interval),
  "seeds": the entries, each with its own "wilson": {group: [lo, hi]}}.
  """
  if not per_seed:
    raise ValueError("no seeds to aggregate")
  groups = list(per_seed[0]["accuracy"])
  seeds = []
  for entry in per_seed:
    entry = dict(entry)
    entry["wilson"] = {g: _rounded(wilson(entry["correct"][g], entry["counts"][g], confidence))
                       for g in groups if g in entry.get("correct", {})}
    seeds.append(entry)
  accuracy = {g: statistics.fmean(s["accuracy"][g] for s in seeds) for g in groups}
  if len(seeds) >= 2:
    interval = {g: _rounded(t_interval([s["accuracy"][g] for s in seeds], confidence))
                for g in groups}
    kind = f"t over {len(seeds)} seeds"
  else:
    interval = dict(seeds[0]["wilson"])
    kind = "Wilson"
  return {"accuracy": accuracy, "interval": interval, "interval_kind": kind, "seeds": seeds}


def _rounded(pair) -> list[float]:
  return [round(pair[0], 2), round(pair[1], 2)]
