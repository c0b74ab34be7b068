"""The reranker's training data: BM25 candidates of each (question, rationale) and their targets.

For a question q with teacher rationale r, KARD's candidates are the BM25 top-N passages under r
and the BM25 top-N under q; every candidate's target is its BM25 score with r as the query (so the
question's candidates are re-scored under the rationale). Training samples a few of each list per
step (KARD: 4 of the rationale's top 32 plus 4 of the question's top 32). Evaluation uses a fixed
list per pair: the rationale's top passage plus K-1 others drawn from both lists; the metric is
whether the reranker ranks that passage first / in the top 3 / top 5.

All sampling is a pure function of (seed, step, row), so a resumed run sees the same candidates.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class CandidateConfig:
  rationale_top: int = 32  # BM25 top-N under the rationale
  question_top: int = 32  # BM25 top-N under the question
  rationale_samples: int = 4  # sampled per training step from the rationale's list
  question_samples: int = 4  # ... and from the question's list
  eval_candidates: int = 8  # fixed list size for KARD's top-1/3/5 accuracy

  def __post_init__(self):
    for name in ("rationale_top", "question_top", "eval_candidates"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.rationale_samples < 0 or self.question_samples < 0 or self.num_train_candidates < 1:
      raise ValueError("need at least one training candidate per step")

  @property
  def num_train_candidates(self) -> int:
    return self.rationale_samples + self.question_samples


@dataclasses.dataclass(frozen=True)
class Pair:
  """A question with one of its teacher rationales."""
  example_id: str
  sample: int
  question: str
  rationale: str


@dataclasses.dataclass(frozen=True)
class RerankExample:
  """A pair's candidate lists (index positions, best first under their own query) and targets."""
  example_id: str
  sample: int
  question: str
  rationale_positions: np.ndarray  # int64 [<= rationale_top]
  rationale_targets: np.ndarray  # float32 BM25(rationale, passage)
  question_positions: np.ndarray  # int64 [<= question_top]
  question_targets: np.ndarray  # float32 BM25(rationale, passage), re-scored

  def candidate_positions(self) -> np.ndarray:
    return np.unique(np.concatenate([self.rationale_positions, self.question_positions]))


def build_examples(index, pairs: Sequence[Pair], config: CandidateConfig = CandidateConfig(), *,
                   show_progress: bool = True) -> list[RerankExample]:
  """Retrieves both candidate lists of every pair and scores all candidates under the rationale.

  Pairs whose rationale matches no passage are dropped (there is nothing to imitate).
  """
  from tqdm.auto import tqdm

  questions = sorted({p.question for p in pairs})
  q_hits = dict(zip(questions, index.search(questions, config.question_top,
                                            show_progress=show_progress)))
  r_hits = index.search([p.rationale for p in pairs], config.rationale_top,
                        show_progress=show_progress)
  out = []
  for pair, (r_pos, r_scores) in tqdm(list(zip(pairs, r_hits)), desc="rescore", unit=" pairs",
                                      disable=not show_progress, mininterval=1.0):
    if len(r_pos) == 0:
      continue
    q_pos = q_hits[pair.question][0]
    out.append(RerankExample(
        pair.example_id, pair.sample, pair.question,
        np.asarray(r_pos, np.int64), np.asarray(r_scores, np.float32),
        np.asarray(q_pos, np.int64),
        np.asarray(index.score(pair.rationale, q_pos), np.float32)))
  return out


def candidate_positions(examples: Iterable[RerankExample]) -> np.ndarray:
  """Every passage some example may show the scorer (sorted, unique)."""
  parts = [e.candidate_positions() for e in examples]
  return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def holdout(pairs: Sequence[Pair], fraction: float = 0.05,
            seed: int = 0) -> tuple[list[Pair], list[Pair]]:
  """(train, dev) by a hash of the example id: all rationales of a question land on one side."""
  ids = sorted({p.example_id for p in pairs},
               key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
  dev = set(ids[:round(fraction * len(ids))])
  return ([p for p in pairs if p.example_id not in dev], [p for p in pairs if p.example_id in dev])


def rng_for(seed: int, *path: int) -> np.random.Generator:
  return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(p) for p in path]])


def sample_train(example: RerankExample, config: CandidateConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(positions [K], targets [K], mask [K]) for one step: samples from each list, no repeats.

  A list shorter than its quota leaves the rest to the other list; slots nobody fills are masked.
  """
  K = config.num_train_candidates
  n_r = min(config.rationale_samples, len(example.rationale_positions))
  pick_r = rng.choice(len(example.rationale_positions), n_r, replace=False)
  chosen = set(example.rationale_positions[pick_r].tolist())
  q_ok = np.flatnonzero([p not in chosen for p in example.question_positions.tolist()])
  n_q = min(K - n_r, len(q_ok))
  pick_q = q_ok[rng.choice(len(q_ok), n_q, replace=False)] if n_q else np.zeros(0, np.int64)
  positions = np.concatenate([example.rationale_positions[pick_r],
                              example.question_positions[pick_q]])
  targets = np.concatenate([example.rationale_targets[pick_r], example.question_targets[pick_q]])
  if len(positions) < K:  # the question's list ran short: top up from the rest of the rationale's
    rest = np.setdiff1d(np.arange(len(example.rationale_positions)), pick_r)
    taken = set(positions.tolist())
    rest = [i for i in rest.tolist() if example.rationale_positions[i] not in taken]
    extra = np.asarray(rest[:K - len(positions)], np.int64)
    positions = np.concatenate([positions, example.rationale_positions[extra]])
    targets = np.concatenate([targets, example.rationale_targets[extra]])
  return _pad(positions, targets, K)


def eval_candidates(example: RerankExample, config: CandidateConfig,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """KARD's evaluation list: the rationale's top passage first, then K-1 distinct others drawn
  from both lists. The label (index 0) is the argmax of the targets."""
  top = int(example.rationale_positions[0])
  pool: dict[int, float] = {}
  for pos, tgt in zip(np.concatenate([example.rationale_positions[1:],
                                      example.question_positions]).tolist(),
                      np.concatenate([example.rationale_targets[1:],
                                      example.question_targets]).tolist()):
    if pos != top:
      pool.setdefault(pos, tgt)
  keys = np.asarray(sorted(pool), np.int64)
  pick = keys[rng.choice(len(keys), min(config.eval_candidates - 1, len(keys)), replace=False)]
  positions = np.concatenate([[top], pick]).astype(np.int64)
  targets = np.asarray([example.rationale_targets[0]] + [pool[int(p)] for p in pick], np.float32)
  return _pad(positions, targets, config.eval_candidates)


def _pad(positions, targets, K):
  n = len(positions)
  mask = np.zeros(K, np.int32)
  mask[:n] = 1
  out_p = np.zeros(K, np.int64)
  out_t = np.zeros(K, np.float32)
  out_p[:n], out_t[:n] = positions, targets
  return out_p, out_t, mask
