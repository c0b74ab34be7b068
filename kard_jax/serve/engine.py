"""The served student: question text -> passages -> model input -> decodes -> parsed answer.

Everything is loaded once: the run's newest checkpoint (through `decoding.Predictor`), the
SentencePiece vocabulary, the BM25 index (memory-mapped) and optionally the reranker. The decoder
is compiled at start-up for every (batch bucket x length bucket) shape of its two decoding modes,
greedy and sampling with `max_samples` samples per input; at serving time inputs are padded to
those shapes, so nothing compiles. Every XLA compilation after start-up is logged and counted
(`recompilations`), so a test or an operator can see that none happened.

A request with n > 1 samples takes the first n of the `max_samples` drawn for its row (the sampled
rows of an input are independent draws, so the first n are n samples).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
import weakref
from typing import Any, Sequence

import numpy as np

from kard_jax.data.answers import parse_answer
from kard_jax.data.errors import InputError
from kard_jax.data.example import Choice
from kard_jax.decoding import adapters, voting
from kard_jax.decoding.predictor import Outputs, Predictor
from kard_jax.serve import questions

log = logging.getLogger("kard.serve")

GREEDY, SAMPLE = "greedy", "sample"
_FEATURE_LENGTHS = re.compile(
    r"TASK_FEATURE_LENGTHS\s*=\s*\{\s*'inputs'\s*:\s*(\d+)\s*,\s*'targets'\s*:\s*(\d+)")


class _CompileWatch:
  """One process-wide JAX compile listener: every XLA compilation while no engine is compiling
  its buckets counts as a recompilation of every serving engine (JAX does not say which function
  compiled, and an unexpected compilation stalls all of them alike)."""

  def __init__(self):
    self.lock = threading.Lock()
    self.compiling = 0
    self.engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()
    self.installed = False

  def install(self) -> None:
    import jax  # pylint: disable=import-outside-toplevel

    with self.lock:
      if not self.installed:
        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        self.installed = True

  def _on_event(self, event: str, duration: float, **_: Any) -> None:
    if event != "/jax/core/compile/backend_compile_duration":
      return
    with self.lock:
      if self.compiling:
        return
      engines = list(self.engines)
    for engine in engines:
      engine.recompilations += 1
      log.warning("recompilation while serving (%.2f s): #%d", duration, engine.recompilations)


_WATCH = _CompileWatch()


class RequestError(ValueError):
  """A request the service cannot answer as asked (becomes a 400 with `code`, `param`)."""

  def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
    super().__init__(message)
    self.param, self.code = param, code


@dataclasses.dataclass(frozen=True)
class EngineConfig:
  """What `kard serve` loads and how it decodes (see its --help for each field)."""
  model_dir: str
  index_dir: str
  vocab: str
  extra_ids: int = 0
  reranker_dir: str | None = None
  num_passages: int = 3
  num_candidates: int = 100  # question-BM25 candidates handed to the reranker
  batch_buckets: tuple[int, ...] = (1, 4, 16, 32)
  length_buckets: tuple[int, ...] | None = None  # default: from the run's trained input length
  max_new_tokens: int | None = None  # default: the run's trained target length
  max_samples: int = 5  # 0: no sampling mode (greedy only, half the compilations)
  min_new_tokens: int = 0  # EOS forbidden before this many tokens (the benchmark's fixed work)
  temperature: float = 1.0
  top_k: int = 50
  top_p: float = 0.95
  seed: int = 0
  mesh_shape: tuple[int, int] = (1, 1)  # (data, model); -1 takes the remaining devices

  def __post_init__(self):
    if not self.batch_buckets or min(self.batch_buckets) < 1:
      raise ValueError("batch buckets must be positive integers")
    if self.length_buckets is not None and (not self.length_buckets
                                            or min(self.length_buckets) < 2):
      raise ValueError("length buckets must be integers >= 2")
    if self.max_samples < 0:
      raise ValueError("max_samples must be >= 0 (0: greedy decoding only)")
    if self.num_passages < 0:
      raise ValueError("num_passages must be >= 0")
    if self.temperature <= 0:
      raise ValueError("temperature must be > 0 (greedy decoding is temperature 0 per request)")


def trained_lengths(model_dir: str) -> tuple[int, int] | None:
  """(inputs, targets) lengths the run was trained with, read from its operative gin config."""
  from kard_jax.training import checkpoints  # pylint: disable=import-outside-toplevel

  try:
    with open(f"{model_dir}/{checkpoints.GIN_CONFIG}", encoding="utf-8") as f:
      m = _FEATURE_LENGTHS.search(f.read())
  except OSError:
    return None
  return (int(m.group(1)), int(m.group(2))) if m else None


def _bucket(value: int, buckets: Sequence[int]) -> int:
  return next(b for b in sorted(buckets) if b >= value)


@dataclasses.dataclass
class Prepared:
  """A request's question, its passages and the student's tokenised input."""
  question: str
  choices: tuple[Choice, ...]
  passages: list[dict[str, Any]]
  inputs: str
  tokens: np.ndarray
  timings: dict[str, float]


class Engine:
  """The loaded student, vocabulary, index and reranker; thread-safe `prepare` and `decode`."""

  def __init__(self, config: EngineConfig, student: Any = None):
    """`student`: anything with `params`, `module`, `family`, `mesh` and `step` (default: a
    `decoding.Predictor` restoring `config.model_dir`'s newest checkpoint; the benchmark passes
    random weights)."""
    import jax  # pylint: disable=import-outside-toplevel

    from kard_jax.data.vocab import load_vocab  # pylint: disable=import-outside-toplevel
    from kard_jax.retrieval import bm25_index  # pylint: disable=import-outside-toplevel
    from kard_jax.training import partitioning  # pylint: disable=import-outside-toplevel

    self.config = config
    trained = trained_lengths(config.model_dir)
    length_buckets = config.length_buckets
    if length_buckets is None:
      top = trained[0] if trained else 512
      length_buckets = tuple(sorted({max(16, top // 4), max(16, top // 2), top}))
    self.length_buckets = tuple(sorted(length_buckets))
    self.batch_buckets = tuple(sorted(config.batch_buckets))
    self.max_input_length = self.length_buckets[-1]
    self.max_batch = self.batch_buckets[-1]
    self.max_new_tokens = config.max_new_tokens or (trained[1] if trained else 128)
    self.vocab = load_vocab(config.vocab, extra_ids=config.extra_ids)
    self.index = bm25_index.load_index(config.index_dir, mmap=True)
    self._index_lock = threading.Lock()
    lengths = dict(max_new_tokens=self.max_new_tokens, min_new_tokens=config.min_new_tokens)
    greedy = adapters.DecodeConfig(method="greedy", **lengths)
    sample = adapters.DecodeConfig(method="sample", num_decodes=max(1, config.max_samples),
                                   temperature=config.temperature, top_k=config.top_k,
                                   top_p=config.top_p, **lengths)
    if student is None:
      mesh = partitioning.create_mesh(config.mesh_shape)
      if any(b % mesh.shape["data"] for b in self.batch_buckets):
        raise ValueError(f"batch buckets {list(self.batch_buckets)} must be multiples of the "
                         f"mesh's data axis ({mesh.shape['data']})")
      student = Predictor(config.model_dir, greedy, batch_size=self.batch_buckets[0], mesh=mesh,
                          seed=config.seed)
    self.student = student
    rules = partitioning.standard_logical_axis_rules()
    shardings = jax.tree.map(lambda x: x.sharding, student.params)
    self._fns = {mode: adapters.make_generate_fn(student.family, student.module, cfg,
                                                 mesh=student.mesh, rules=rules,
                                                 param_shardings=shardings)
                 for mode, cfg in ((GREEDY, greedy), (SAMPLE, sample))}
    self.modes = (GREEDY, SAMPLE) if config.max_samples else (GREEDY,)
    self.decode_configs = {GREEDY: greedy, SAMPLE: sample}
    self.reranker = None
    if config.reranker_dir:
      from kard_jax.serve import rerank  # pylint: disable=import-outside-toplevel
      self.reranker = rerank.ServingReranker(config.reranker_dir, self.index)
    self.model_name = f"kard-{student.family}-step{student.step}"
    self._key = jax.random.PRNGKey(config.seed)
    self._calls = 0
    self.compiled = False
    self.compile_seconds = 0.0
    self.recompilations = 0

  # --- start-up ---------------------------------------------------------------------------------

  def compile(self) -> float:
    """Compiles every (mode, batch bucket, length bucket) decode; returns the seconds it took."""
    import jax  # pylint: disable=import-outside-toplevel

    _WATCH.install()
    with _WATCH.lock:
      _WATCH.compiling += 1
    try:
      start = time.perf_counter()
      shapes = [(m, b, l) for m in self.modes for b in self.batch_buckets
                for l in self.length_buckets]
      for mode, batch, length in shapes:
        tokens = np.zeros((batch, length), np.int32)
        tokens[:, 0] = 1  # one EOS: an empty question
        jax.block_until_ready(self._fns[mode](self.student.params, tokens,
                                              jax.random.fold_in(self._key, 0)))
      if self.reranker is not None:
        self.reranker.warm_up(self.config.num_candidates)
      self.search("warm up", max(1, self.config.num_passages))
      self.compile_seconds = time.perf_counter() - start
    finally:
      with _WATCH.lock:
        _WATCH.compiling -= 1
    self.compiled = True
    _WATCH.engines.add(self)
    log.info("compiled %d decoder shapes (modes %s; batch %s; length %s) in %.1f s", len(shapes),
             ", ".join(self.modes), list(self.batch_buckets), list(self.length_buckets),
             self.compile_seconds)
    return self.compile_seconds

  # --- one request ------------------------------------------------------------------------------

  def search(self, query: str, k: int) -> list[dict[str, Any]]:
    """The top-k passages (BM25, or BM25 candidates reranked) of a question."""
    if k == 0:
      return []
    with self._index_lock:
      if self.reranker is None:
        hits = self.index.search([query], k)[0]
      else:
        candidates = self.index.search([query], max(k, self.config.num_candidates))[0]
        hits = self.reranker.rerank(query, candidates, k)
      out = []
      for pos, score in zip(hits[0].tolist(), hits[1].tolist()):
        p = self.index.passages[int(pos)]
        out.append({"id": p.id, "title": p.title, "text": p.text, "score": round(float(score), 4)})
    return out

  def tokenize(self, text: str) -> np.ndarray:
    return np.asarray(list(self.vocab.encode(text)) + [adapters.decode_lib.EOS_ID], np.int32)

  def prepare(self, message: str, num_passages: int | None = None) -> Prepared:
    """Question, passages and input tokens; passages are dropped (last first) until the input
    fits the longest compiled length, else a RequestError."""
    start = time.perf_counter()
    question, choices = questions.parse_question(message)
    if not question and not choices:
      raise RequestError("the question is empty", param="messages", code="empty_question")
    k = self.config.num_passages if num_passages is None else num_passages
    passages = self.search(question, k)
    retrieved = time.perf_counter()
    while True:
      inputs = questions.model_input(question, choices, [p["text"] for p in passages])
      tokens = self.tokenize(inputs)
      if len(tokens) <= self.max_input_length:
        break
      if not passages:
        raise RequestError(
            f"the question is {len(tokens)} tokens long; this model reads at most "
            f"{self.max_input_length}", param="messages", code="context_length_exceeded")
      passages = passages[:-1]
    done = time.perf_counter()
    timings = {"retrieve_ms": 1e3 * (retrieved - start), "prompt_ms": 1e3 * (done - retrieved)}
    return Prepared(question, choices, passages, inputs, tokens, timings)

  def decode(self, mode: str, rows: Sequence[np.ndarray]) -> list[Outputs]:
    """Decodes input rows together in `mode`, padded to the smallest compiled bucket."""
    import jax  # pylint: disable=import-outside-toplevel

    if not rows or len(rows) > self.max_batch:
      raise ValueError(f"{len(rows)} rows: decode 1 to {self.max_batch} at a time")
    length = _bucket(max(len(r) for r in rows), self.length_buckets)
    batch = np.zeros((_bucket(len(rows), self.batch_buckets), length), np.int32)
    for i, row in enumerate(rows):
      batch[i, :len(row)] = row
    self._calls += 1
    result = jax.device_get(self._fns[mode](self.student.params, batch,
                                            jax.random.fold_in(self._key, self._calls)))
    return [Outputs(np.asarray(result.tokens[i]), np.asarray(result.scores[i]),
                    np.asarray(result.lengths[i])) for i in range(len(rows))]

  def texts(self, outputs: Outputs, n: int, max_tokens: int) -> list[tuple[str, list[int], str]]:
    """(text, token ids, finish reason) of the first n decodes, cut at `max_tokens` tokens."""
    out = []
    for seq, length in zip(outputs.sequences()[:n], outputs.lengths[:n].tolist()):
      ended = int(length) == len(seq) + 1  # EOS was generated (and stripped from seq)
      if len(seq) > max_tokens:
        seq, ended = seq[:max_tokens], False
      out.append((self.vocab.decode(seq), seq, "stop" if ended else "length"))
    return out

  def answer(self, prepared: Prepared, texts: Sequence[str],
             scores: Sequence[float]) -> dict[str, Any]:
    """Parsed answers and the self-consistency vote over them."""
    answers = [parse_answer(t, prepared.choices) for t in texts]
    vote = voting.majority_vote(answers, [c.label for c in prepared.choices], scores)
    text = next((c.text for c in prepared.choices if c.label == vote.label), None)
    return {"answers": answers, "answer": vote.label, "answer_text": text,
            "votes": vote.counts}

  def decode_piece(self, tokens: Sequence[int]) -> str:
    return self.vocab.decode(list(tokens))

  def close(self) -> None:
    _WATCH.engines.discard(self)
    self.index.close()
