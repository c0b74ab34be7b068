"""What the reranker reads: BM25 candidates of each (question, rationale) and their targets, the
passages' token arrays (cached on disk), and the trainer's batches.

Candidates. For a question q with teacher rationale r, KARD's candidates are the BM25 top-N
passages under r and the BM25 top-N under q; every candidate's target is its BM25 score with r as
the query (so the question's candidates are re-scored under the rationale). Training samples a few
of each list per step (KARD: 4 of the rationale's top 32 plus 4 of the question's top 32).
Evaluation uses a fixed list per pair: the rationale's top passage plus K-1 others drawn from both
lists; the metric is whether the reranker ranks that passage first / in the top 3 / top 5.

All sampling is a pure function of (seed, step, row), so a resumed run sees the same candidates.

Passage tokens (WordPiece ids or encoder states), computed once and cached on disk. Late
interaction needs every candidate passage's token vectors. They do not depend on the question, so
they are computed once per (knowledge base, encoder, max length), stored flat with an offset table
(a passage of 20 tokens takes 20 rows, not `max_length`) and gathered into padded [B, K, P, ...]
blocks per batch. Encoding sorts passages by length so each encoder batch is padded only to its own
longest passage (a 2-3x saving on short Wikipedia sentences).

Cache layout: DIR/<key>/{values.npy, offsets.npy, positions.npy, meta.json}, written to a temporary
directory and renamed, so a killed run never leaves a half cache; `key` hashes everything the
values depend on.

Batches for the trainer: candidate lists turned into padded arrays, one layout per scorer. Every
batch has
  targets [B, K] float32        BM25(rationale, candidate)
  candidate_mask [B, K] int32   real candidates (rows of an evaluation pass's padding are all 0)
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
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np
import seqio

from kard_jax.data.errors import InputError
from kard_jax.training import input_pipeline


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


# -------------------------------------------------------- passage token tables, cached on disk


class TokenTable:
  """Variable-length token arrays of some passages, addressed by their index positions."""

  def __init__(self, positions: np.ndarray, offsets: np.ndarray, values: np.ndarray):
    positions = np.asarray(positions, np.int64)
    if len(offsets) != len(positions) + 1 or int(offsets[-1]) != len(values):
      raise ValueError("offsets do not fit positions and values")
    self.positions, self.offsets, self.values = positions, np.asarray(offsets, np.int64), values
    self._row = {int(p): i for i, p in enumerate(positions.tolist())}

  def __len__(self) -> int:
    return len(self.positions)

  def __contains__(self, position: int) -> bool:
    return int(position) in self._row

  @property
  def feature_shape(self) -> tuple[int, ...]:
    return tuple(self.values.shape[1:])

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)

  def get(self, position: int) -> np.ndarray:
    row = self._row.get(int(position))
    if row is None:
      raise KeyError(f"passage position {position} is not in this table")
    return self.values[self.offsets[row]:self.offsets[row + 1]]

  def gather(self, positions: np.ndarray, length: int,
             valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Padded (values [..., length, *feature], mask [..., length] int32) for an array of positions.

    Entries where `valid` is False (padding candidates) are all zeros with an empty mask.
    """
    positions = np.asarray(positions)
    valid = np.ones(positions.shape, bool) if valid is None else np.asarray(valid, bool)
    out = np.zeros(positions.shape + (length,) + self.feature_shape, self.values.dtype)
    mask = np.zeros(positions.shape + (length,), np.int32)
    flat_out = out.reshape((-1, length) + self.feature_shape)
    flat_mask = mask.reshape(-1, length)
    for i, (p, ok) in enumerate(zip(positions.reshape(-1).tolist(), valid.reshape(-1).tolist())):
      if not ok:
        continue
      v = self.get(p)[:length]
      flat_out[i, :len(v)] = v
      flat_mask[i, :len(v)] = 1
    return out, mask

  # --- disk ------------------------------------------------------------------------------------

  def save(self, directory: str, meta: Mapping[str, Any]) -> None:
    """Writes the table atomically into `directory` (replacing nothing that exists)."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tokens.", suffix=".tmp", dir=parent)
    try:
      np.save(os.path.join(tmp, "values.npy"), self.values)
      np.save(os.path.join(tmp, "offsets.npy"), self.offsets)
      np.save(os.path.join(tmp, "positions.npy"), self.positions)
      with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(dict(meta), f, indent=1, sort_keys=True)
      if os.path.isdir(directory):  # another process finished the same cache first
        shutil.rmtree(tmp)
        return
      os.replace(tmp, directory)
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise

  @classmethod
  def load(cls, directory: str, mmap: bool = True) -> "TokenTable":
    try:
      mode = "r" if mmap else None
      values = np.load(os.path.join(directory, "values.npy"), mmap_mode=mode)
      offsets = np.load(os.path.join(directory, "offsets.npy"))
      positions = np.load(os.path.join(directory, "positions.npy"))
      return cls(positions, offsets, values)
    except (OSError, ValueError) as e:
      raise InputError(directory, f"unreadable passage cache ({e}); delete it to rebuild") from None


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
  """WordPiece ids with [CLS]/[SEP], truncated to `max_length`, unpadded."""
  tokenizer.no_padding()
  tokenizer.enable_truncation(max_length=max_length)
  return [np.asarray(e.ids, np.int32) for e in tokenizer.encode_batch(list(texts))]


def id_table(positions: Sequence[int], token_ids: Sequence[np.ndarray]) -> TokenTable:
  offsets = np.concatenate([[0], np.cumsum([len(t) for t in token_ids])]).astype(np.int64)
  values = np.concatenate(token_ids).astype(np.int32) if token_ids else np.zeros(0, np.int32)
  return TokenTable(np.asarray(positions, np.int64), offsets, values)


def encode_table(ids: TokenTable, encode_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                 batch_size: int = 64, bucket: int = 16, dtype: Any = np.float16,
                 show_progress: bool = True, desc: str = "encode passages") -> TokenTable:
  """Per-token outputs of `encode_fn` for every passage of a table, stored as `dtype`.

  Maps ids [L_i] (or states [L_i, H]) to vectors [L_i, D]:
  `encode_fn(x [b, l, ...], mask [b, l]) -> [b, l, D]` sees batches sorted by length, padded
  to a multiple of `bucket` tokens (few distinct shapes, so few compilations) and to `batch_size`
  rows.
  """
  from tqdm.auto import tqdm

  lengths = ids.lengths()
  order = np.argsort(lengths, kind="stable")
  chunks: list[np.ndarray | None] = [None] * len(ids)
  with tqdm(total=len(ids), desc=desc, unit=" passages", disable=not show_progress,
            mininterval=2.0) as bar:
    for s in range(0, len(order), batch_size):
      rows = order[s:s + batch_size]
      width = int(-(-max(int(lengths[rows].max()), 1) // bucket) * bucket)
      batch = np.zeros((batch_size, width) + ids.feature_shape, ids.values.dtype)
      mask = np.zeros((batch_size, width), np.int32)
      for j, r in enumerate(rows.tolist()):
        v = ids.values[ids.offsets[r]:ids.offsets[r + 1]]
        batch[j, :len(v)], mask[j, :len(v)] = v, 1
      states = np.asarray(encode_fn(batch, mask))
      for j, r in enumerate(rows.tolist()):
        chunks[r] = states[j, :lengths[r]].astype(dtype)
      bar.update(len(rows))
  values = (np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype))
  return TokenTable(ids.positions, ids.offsets, values)


def concat(tables: Sequence[TokenTable]) -> TokenTable:
  """One table holding every passage of `tables` (the first occurrence of a position wins)."""
  tables = [t for t in tables if len(t)]
  if len(tables) == 1:
    return tables[0]
  if not tables:
    return TokenTable(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int32))
  positions, chunks, seen = [], [], set()
  for t in tables:
    for i, p in enumerate(t.positions.tolist()):
      if p not in seen:
        seen.add(p)
        positions.append(p)
        chunks.append(t.values[t.offsets[i]:t.offsets[i + 1]])
  offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
  return TokenTable(np.asarray(positions, np.int64), offsets, np.concatenate(chunks))


def subset(table: TokenTable, positions: np.ndarray) -> TokenTable:
  """The rows of `table` for `positions` (each must be in it), in that order."""
  chunks = [np.asarray(table.get(p)) for p in np.asarray(positions).tolist()]
  offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
  values = (np.concatenate(chunks) if chunks
            else np.zeros((0,) + table.feature_shape, table.values.dtype))
  return TokenTable(np.asarray(positions, np.int64), offsets, values)


def _key(obj: Any) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached(cache_dir: str | None, parts: Mapping[str, Any], positions: np.ndarray,
           compute: Callable[[np.ndarray], TokenTable]) -> TokenTable:
  """A table covering `positions` for the settings `parts`, computing only what is not cached.

  The cache is DIR/<hash of parts>/shard-<hash of positions>/: each call that finds passages
  missing computes just those (`compute(missing_positions)`) and adds them as a new shard, so
  training, evaluation and inference over overlapping candidate sets share one encoding pass.
  """
  positions = np.unique(np.asarray(positions, np.int64))
  if cache_dir is None:
    return compute(positions)
  root = os.path.join(cache_dir, _key(dict(parts)))
  shards = []
  if os.path.isdir(root):
    for name in sorted(os.listdir(root)):
      if name.startswith("shard-") and os.path.isfile(os.path.join(root, name, "meta.json")):
        shards.append(TokenTable.load(os.path.join(root, name)))
  have = concat(shards) if shards else None
  missing = positions if have is None else np.asarray(
      [p for p in positions.tolist() if p not in have], np.int64)
  if len(missing):
    table = compute(missing)
    shard = os.path.join(root, f"shard-{_key(missing.tobytes().hex())}")
    table.save(shard, {**parts, "passages": len(table)})
    shards.append(TokenTable.load(shard))
    have = concat(shards)
  return have


# --------------------------------------------------------------------- batches for the trainer


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
    out = {"targets": s((B, K), np.float32), "candidate_mask": s((B, K), np.int32)}
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
               valid: np.ndarray) -> dict[str, np.ndarray]:
    """One batch from B questions ("" for a padding row) and their [B, K] candidate lists."""
    out = {"targets": np.where(valid > 0, targets, 0.0).astype(np.float32),
           "candidate_mask": valid.astype(np.int32)}
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

  def __init__(self, examples: Sequence[RerankExample], tables: Tables,
               config: CandidateConfig, batch_size: int, training: bool, seed: int,
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
      self._fixed = [eval_candidates(e, config, rng_for(self.seed, 1, i))
                     for i, e in enumerate(self.examples)]

  @property
  def element_spec(self):
    return self.tables.spec(self.batch_size, self.num_candidates)

  def __len__(self) -> int:
    """Batches in one evaluation pass (training streams are endless)."""
    return -(-len(self.examples) // self.batch_size)

  def _order(self, epoch: int) -> np.ndarray:
    if self._epoch_order[0] != epoch:
      order = rng_for(self.seed, 0, epoch).permutation(len(self.examples))
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
        rng = rng_for(self.seed, 2, step, global_row)
        positions[r], targets[r], valid[r] = sample_train(ex, self.config, rng)
      else:
        positions[r], targets[r], valid[r] = self._fixed[i]
    return self.tables.assemble(questions, positions, targets, valid)

  def batches(self, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
    step = start
    while self.training or step < len(self):
      yield self.batch(step)
      step += 1
