"""What one pipeline run does: the benchmark, its sources, the methods and their settings.

Bound from a gin file (`kard pipeline --config gin_configs/<benchmark>/pipeline.gin`), e.g.

  from __gin__ import dynamic_registration
  from kard_jax.pipeline import config
  config.PipelineConfig:
    benchmark = 'strategyqa'
    source = '../shared/data/strategyqa'
    kb = ['../shared/data/strategyqa/wiki_sentence_kb.jsonl']
    teacher = {'source': 'import', 'file': '...', 'id_field': 'qid'}

Each student method trains from `gin_dir/<method>.gin` (default gin_configs/<benchmark>/), a
file `kard train --gin_file=...` also runs on its own.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import gin

from kard_jax.pipeline import methods as methods_lib

DEFAULT_METHODS = ("teacher", "answer_only", "reasoning", "multitask", "kard_bm25", "kard_rerank",
                   "scicot")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Every setting of a pipeline run (paths are relative to the working directory)."""
  benchmark: str = "synthetic"
  # --- data: the synthetic generator's settings, or a real benchmark's official files.
  synthetic: Mapping[str, Any] | None = None  # SyntheticConfig fields (benchmark 'synthetic')
  source: str | Mapping[str, str] | None = None  # a directory, or {split: file}
  holdout_fraction: float | None = None  # for sources without a validation file (None: default)
  split_seed: int | None = None
  max_examples: Mapping[str, int] | None = None  # {split: n} keeps the first n (smoke runs)
  # --- knowledge base (real benchmarks; the synthetic generator writes its own).
  kb: tuple[str, ...] = ()
  kb_format: str = "auto"
  kb_window: int | None = 100  # words per passage (None: keep documents whole)
  # --- teacher rationales: {'source': 'offline'} (synthetic oracle), {'source': 'import',
  # 'file': F, 'id_field': ..., 'rationale_field': ..., 'answer_field': ...} (`kard teach
  # --import_file`), {'source': 'rationale_file', 'file': F} (qid/question-keyed files such as
  # ../shared/data/rationales/), or {'source': 'endpoint', 'base_url': ..., 'model': ...,
  # 'n': 10, ...} (any `kard teach` flag).
  teacher: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"source": "offline"})
  max_rationales: int | None = None  # kept per training question
  # Stored few-shot teacher predictions on the evaluation split (the teacher baseline): a
  # JSON-lines file {id, prediction|rationale|answer}, 'oracle' (synthetic: the generator's
  # chain of facts), or None (no teacher row).
  teacher_predictions: str | None = None
  # --- vocabulary: trained on the benchmark (size below), or a given spiece.model (Flan-T5).
  vocab_size: int = 1000
  vocab_file: str | None = None
  vocab_extra_ids: int = 0
  # --- retrieval (BM25, Lucene's defaults) and the reranker.
  bm25_k1: float = 0.9
  bm25_b: float = 0.4
  num_candidates: int = 100  # question-BM25 candidates per evaluation question (reranker input)
  rationale_k: int = 10  # passages retrieved per training rationale
  # KARD's training query: "rationale" (the paper's), "question+rationale" or "question" (for
  # rationales that do not name their subject, e.g. the synthetic teacher's
  # rationale_subject='pronoun', whose fact words name cities shared by many entities).
  rationale_query: str = "rationale"
  num_passages: int = 3  # passages a KARD student reads (top-k)
  reranker_gin: str | None = None  # default gin_dir/reranker.gin
  reranker_bindings: tuple[str, ...] = ()
  # --- students.
  methods: tuple[str, ...] = DEFAULT_METHODS
  gin_dir: str | None = None  # default gin_configs/<benchmark>
  train_bindings: tuple[str, ...] = ()  # extra gin bindings for every student
  multitask_rates: tuple[float, float] = (1.0, 1.0)  # (rationale, answer) mixing rates
  # Training seeds (gin RANDOM_SEED: the student's initialisation and its data order; the
  # benchmark, its knowledge base and rationales stay fixed). Each accuracy is the mean over
  # seeds with a 95% interval. `seed_methods`: the methods trained with every seed (None: all);
  # the others with the first seed only.
  seeds: tuple[int, ...] = (0,)
  seed_methods: tuple[str, ...] | None = None
  # --- evaluation.
  eval_split: str = "test"
  max_decode_length: int = 64  # new tokens per decode (a rationale and its answer)
  eval_batch_size: int = 64  # inputs decoded together (a multiple of the device count)
  eval_seed: int = 0  # sampling seed of self-consistency
  self_consistency: int = 5  # sampled rationales per question (0: no self-consistency rows)
  self_consistency_methods: tuple[str, ...] = ("reasoning", "kard_bm25", "kard_rerank")
  # --- the knowledge-base-size sweep (synthetic): num_entities values, methods.
  sweep_entities: tuple[int, ...] = ()
  sweep_methods: tuple[str, ...] = methods_lib.SWEEP_METHODS
  group_field: str | None = None  # examples' extra field to break accuracy down by
  # --- output.
  results_dir: str = "results"
  results_name: str | None = None  # default: the benchmark name
  plot: bool = True

  def __post_init__(self):
    for f in dataclasses.fields(self):  # gin gives lists; keep tuples (hashable, canonical)
      value = getattr(self, f.name)
      if isinstance(value, list):
        object.__setattr__(self, f.name, tuple(value))
    for m in (self.methods + self.sweep_methods + self.self_consistency_methods
              + (self.seed_methods or ())):
      methods_lib.get(m)
    if self.rationale_query not in ("rationale", "question+rationale", "question"):
      raise ValueError("rationale_query must be 'rationale', 'question+rationale' or "
                       f"'question', got {self.rationale_query!r}")
    if not self.seeds or len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f"seeds must be distinct and at least one, got {list(self.seeds)}")
    if self.benchmark == "synthetic" and self.source is not None:
      raise ValueError("the synthetic benchmark is generated; give `synthetic`, not `source`")
    if self.benchmark != "synthetic" and self.source is None:
      raise ValueError(f"benchmark {self.benchmark!r} needs `source` (its official files)")
    if self.sweep_entities and self.benchmark != "synthetic":
      raise ValueError("sweep_entities applies to the synthetic benchmark only")

  def seeds_for(self, method: str) -> tuple[int, ...]:
    """The training seeds of `method` (every seed, or the first only)."""
    owner = methods_lib.training_owner(method)
    if self.seed_methods is None or method in self.seed_methods or owner in self.seed_methods:
      return self.seeds
    return self.seeds[:1]

  @property
  def gin_directory(self) -> str:
    return self.gin_dir or os.path.join("gin_configs", self.benchmark)

  @property
  def name(self) -> str:
    return self.results_name or self.benchmark

  def to_json(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    for k, v in out.items():
      if isinstance(v, tuple):
        out[k] = list(v)
      elif isinstance(v, Mapping):
        out[k] = dict(v)
    return out


def method_gin(config: PipelineConfig, method: str) -> str:
  return os.path.join(config.gin_directory, f"{method}.gin")
