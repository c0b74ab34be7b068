"""Self-consistency: the majority answer over several sampled rationales (Wang et al. 2023).

Tie rule, applied in order:
  1. the label with the most votes wins;
  2. among labels tied on votes, the one whose samples have the highest *summed* sequence log-prob
     (more total model belief; with equal counts this is the same as the highest mean);
  3. if still tied (e.g. no log-probs given), the label that comes first in the choice order.
Samples whose answer could not be parsed, or is not one of the choices, do not vote; with no valid
vote at all the prediction is None (scored as wrong).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class Vote:
  label: str | None  # the winning label, None when no sample gave a valid answer
  counts: dict[str, int]  # votes per label that received any, in choice order
  log_prob_sums: dict[str, float]  # summed sequence log-probs per voted label

  def to_json(self) -> dict:
    return {"label": self.label, "counts": dict(self.counts),
            "log_prob_sums": dict(self.log_prob_sums)}


def majority_vote(answers: Sequence[str | None], labels: Sequence[str],
                  log_probs: Sequence[float] | None = None) -> Vote:
  """Votes over `answers` (one parsed label or None per sample) among the choice `labels`."""
  if log_probs is not None and len(log_probs) != len(answers):
    raise ValueError(f"{len(answers)} answers but {len(log_probs)} log-probs")
  order = {label: i for i, label in enumerate(labels)}
  counts: dict[str, int] = {}
  sums: dict[str, float] = {}
  for i, answer in enumerate(answers):
    if answer is None or answer not in order:
      continue
    counts[answer] = counts.get(answer, 0) + 1
    lp = 0.0 if log_probs is None else float(log_probs[i])
    sums[answer] = sums.get(answer, 0.0) + (lp if math.isfinite(lp) else -math.inf)
  voted = sorted(counts, key=order.__getitem__)
  if not voted:
    return Vote(None, {}, {})
  # max() keeps the first of equal keys, and `voted` is in choice order: rule 3 for free.
  winner = max(voted, key=lambda label: (counts[label], sums[label]))
  return Vote(winner, {l: counts[l] for l in voted}, {l: sums[l] for l in voted})
