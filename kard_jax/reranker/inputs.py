"""Batches for the trainer: candidate lists turned into padded arrays, one layout per scorer.

Every batch has
  targets [B, K] float32        BM25(rationale, candidate)
  candidate_mask [B, K] int32   real candidates (rows of an evaluation pass's padding are all 0)
  step [B] int32                the global step the batch is for (temperature schedules read it)
and, by layout:
  "states" (late interaction, frozen passage encoder): query_ids, query_mask [B, Q];
           passage_states [B, K, P, H] float16 from the frozen encoder; passage_mask [B, K, P]
  "tail"   (as "states", question encoder trained only in its top layers): query_states
           [B, Q, H] float16 from the frozen bottom layers instead of query_ids
  "ids"    (late interaction, trained passage encoder): query_ids, query_mask; passage_ids and
           passage_mask [B, K, P]
  "pairs"  (cross-encoder): pair_ids, pair_mask, pair_type_ids [B, K, L] for
           "[CLS] question [SEP] passage [SEP]"
The stream is a pure function of (examples, seed, step), so `batches(start)` resumes exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import jax
import numpy as np
import seqio

from kard_jax.reranker import data as data_lib
from kard_jax.reranker.passage_cache import TokenTable
from kard_jax.training import input_pipeline

LAYOUTS = ("states", "tail", "ids", "pairs")


@dataclasses.dataclass(frozen=True)
class Tables:
  """What batches are assembled from: question ids and per-passage ids (and states)."""
  layout: str
  query_ids: dict[str, np.ndarray]  # question text -> WordPiece ids ([CLS] ... [SEP])
  passage_ids: TokenTable  # WordPiece ids per passage ([CLS] ... [SEP])
  passage_states: TokenTable | None = None  # frozen encoder states ("states" and "tail")
  query_states: dict[str, np.ndarray] | None = None  # frozen bottom-layer states ("tail")
  max_query_length: int = 64
  max_passage_length: int = 64
  max_pair_length: int = 128
  sep_id: int = 102

  def __post_init__(self):
    if self.layout not in LAYOUTS:
      raise ValueError(f"unknown layout {self.layout!r}; choose from {LAYOUTS}")
    if self.layout in ("states", "tail") and self.passage_states is None:
      raise ValueError(f"the {self.layout!r} layout needs passage_states")
    if self.layout == "tail" and self.query_states is None:
      raise ValueError("the 'tail' layout needs query_states")

  def spec(self, batch_size: int, num_candidates: int) -> dict[str, jax.ShapeDtypeStruct]:
    B, K = batch_size, num_candidates
    s = lambda shape, dtype: jax.ShapeDtypeStruct(shape, np.dtype(dtype))  # noqa: E731
    out = {"targets": s((B, K), np.float32), "candidate_mask": s((B, K), np.int32),
           "step": s((B,), np.int32)}
    if self.layout == "pairs":
      for name in ("pair_ids", "pair_mask", "pair_type_ids"):
        out[name] = s((B, K, self.max_pair_length), np.int32)
      return out
    Q, P = self.max_query_length, self.max_passage_length
    if self.layout == "tail":
      first = next(iter(self.query_states.values()))
      out["query_states"] = s((B, Q) + first.shape[1:], first.dtype)
    else:
      out["query_ids"] = s((B, Q), np.int32)
    out["query_mask"] = s((B, Q), np.int32)
    out["passage_mask"] = s((B, K, P), np.int32)
    if self.layout == "ids":
      out["passage_ids"] = s((B, K, P), np.int32)
    else:
      H = self.passage_states.feature_shape[-1]
      out["passage_states"] = s((B, K, P, H), self.passage_states.values.dtype)
    return out

  def queries(self, questions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Padded question ids [B, Q] (layout "tail": frozen states [B, Q, H]) and mask; "" pads."""
    Q = self.max_query_length
    source = self.query_states if self.layout == "tail" else self.query_ids
    first = next(iter(source.values()))
    out = np.zeros((len(questions), Q) + first.shape[1:], first.dtype)
    mask = np.zeros((len(questions), Q), np.int32)
    for i, q in enumerate(questions):
      if not q:
        continue
      v = source[q][:Q]
      out[i, :len(v)], mask[i, :len(v)] = v, 1
    return out, mask

  def pairs(self, questions: Sequence[str], positions: np.ndarray,
            valid: np.ndarray) -> dict[str, np.ndarray]:
    """[CLS] q [SEP] p [SEP] per (row, candidate), the passage cut first when too long."""
    B, K = positions.shape
    L = self.max_pair_length
    ids = np.zeros((B, K, L), np.int32)
    mask = np.zeros((B, K, L), np.int32)
    types = np.zeros((B, K, L), np.int32)
    for b in range(B):
      if not questions[b]:
        continue
      q = self.query_ids[questions[b]][:L // 2]
      for k in range(K):
        if not valid[b, k]:
          continue
        p = self.passage_ids.get(positions[b, k])[1:]  # its [SEP] stays; [CLS] is the question's
        p = p[:L - len(q)]
        if len(p) and p[-1] != self.sep_id:
          p = np.concatenate([p[:-1], [self.sep_id]])
        n = len(q) + len(p)
        ids[b, k, :n] = np.concatenate([q, p])
        mask[b, k, :n] = 1
        types[b, k, len(q):n] = 1
    return {"pair_ids": ids, "pair_mask": mask, "pair_type_ids": types}

  def assemble(self, questions: Sequence[str], positions: np.ndarray, targets: np.ndarray,
               valid: np.ndarray, step: int) -> dict[str, np.ndarray]:
    """One batch from B questions ("" for a padding row) and their [B, K] candidate lists."""
    out = {"targets": np.where(valid > 0, targets, 0.0).astype(np.float32),
           "candidate_mask": valid.astype(np.int32),
           "step": np.full((len(questions),), step, np.int32)}
    if self.layout == "pairs":
      out.update(self.pairs(questions, positions, valid))
      return out
    key = "query_states" if self.layout == "tail" else "query_ids"
    out[key], out["query_mask"] = self.queries(questions)
    P = self.max_passage_length
    if self.layout == "ids":
      out["passage_ids"], out["passage_mask"] = self.passage_ids.gather(positions, P, valid)
    else:
      out["passage_states"], out["passage_mask"] = self.passage_states.gather(positions, P, valid)
    return out


class RerankerInput(input_pipeline.InputPipeline):
  """Training: an endless, epoch-shuffled stream with fresh candidate samples every step.
  Evaluation: one pass over fixed candidate lists (KARD's), the last batch padded."""

  def __init__(self, examples: Sequence[data_lib.RerankExample], tables: Tables,
               config: data_lib.CandidateConfig, batch_size: int, training: bool, seed: int,
               shard_info: seqio.ShardInfo = seqio.ShardInfo(0, 1)):
    if not examples:
      raise ValueError("no reranker examples")
    self.examples, self.tables, self.config = list(examples), tables, config
    self.training, self.seed, self.batch_size = training, int(seed), int(batch_size)
    self.shard_info = shard_info
    self.local_batch = input_pipeline.local_batch_size(batch_size, shard_info)
    self.num_candidates = config.num_train_candidates if training else config.eval_candidates
    self._epoch_order: tuple[int, np.ndarray] = (-1, np.zeros(0, np.int64))
    if not training:
      self._fixed = [data_lib.eval_candidates(e, config, data_lib.rng_for(self.seed, 1, i))
                     for i, e in enumerate(self.examples)]

  @property
  def element_spec(self):
    return self.tables.spec(self.batch_size, self.num_candidates)

  def __len__(self) -> int:
    """Batches in one evaluation pass (training streams are endless)."""
    return -(-len(self.examples) // self.batch_size)

  def _order(self, epoch: int) -> np.ndarray:
    if self._epoch_order[0] != epoch:
      order = data_lib.rng_for(self.seed, 0, epoch).permutation(len(self.examples))
      self._epoch_order = (epoch, order)
    return self._epoch_order[1]

  def _rows(self, step: int) -> list[int | None]:
    """Example indices of this host's rows of batch `step` (None: padding)."""
    first = step * self.batch_size + self.shard_info.index * self.local_batch
    rows = []
    n = len(self.examples)
    for j in range(first, first + self.local_batch):
      if self.training:
        rows.append(int(self._order(j // n)[j % n]))
      else:
        rows.append(j if j < n else None)
    return rows

  def batch(self, step: int) -> dict[str, np.ndarray]:
    rows = self._rows(step)
    K = self.num_candidates
    positions = np.zeros((len(rows), K), np.int64)
    targets = np.zeros((len(rows), K), np.float32)
    valid = np.zeros((len(rows), K), np.int32)
    questions = []
    for r, i in enumerate(rows):
      if i is None:
        questions.append("")
        continue
      ex = self.examples[i]
      questions.append(ex.question)
      if self.training:
        global_row = step * self.batch_size + self.shard_info.index * self.local_batch + r
        rng = data_lib.rng_for(self.seed, 2, step, global_row)
        positions[r], targets[r], valid[r] = data_lib.sample_train(ex, self.config, rng)
      else:
        positions[r], targets[r], valid[r] = self._fixed[i]
    return self.tables.assemble(questions, positions, targets, valid, step)

  def batches(self, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
    step = start
    while self.training or step < len(self):
      yield self.batch(step)
      step += 1
