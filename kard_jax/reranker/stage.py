"""A reranker run over a prepared benchmark directory: its config, how the run is assembled
(encoder weights, model, tables, trainer inputs) and rebuilt, and its three stages: train,
evaluate, apply.

Typed throughout: `train(TrainConfig, RunPaths)`, `evaluate(RunPaths, EvalConfig)` and
`apply(RunPaths, ApplyConfig)` return what they made. `kard rerank` builds these configs from its
flags and gin files; the pipeline's reranker stage builds them from its own config. Gin is read
once, at the process edge, into a standalone `TrainConfig` (`TrainConfig.from_gin`, the only code
here that reads gin's global config); training then passes every trainer argument explicitly.

Layout read:
  DATA/examples/{split}.jsonl, DATA/rationales/train.jsonl   questions and teacher rationales
  INDEX/                                                     the BM25 index (`kard retrieval build`)
and written: the run directory (trainer checkpoints, summaries, model_config.json, config.gin),
DATA/retrieval/reranked_{split}.jsonl (apply) and a cache of passage states and vectors. The run
directory's `model_config.json` holds `RerankerConfig.to_json()` and the encoder checkpoint it
started from, so evaluation and inference rebuild the same model without the gin files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from kard_jax.data.errors import InputError
from kard_jax.data.example import read_examples
from kard_jax.data.rationale import read_rationales
from kard_jax.models import bert as bert_lib
from kard_jax.models import bert_tokenizer, bert_weights
from kard_jax.reranker import data as data_lib
from kard_jax.reranker import inference as inference_lib
from kard_jax.reranker import metrics as metrics_lib
from kard_jax.reranker import model as model_lib
from kard_jax.reranker import scorer as scorer_lib
from kard_jax.retrieval import bm25_index
from kard_jax.retrieval import gold as gold_lib
from kard_jax.retrieval import retrieval_file, retrieve
from kard_jax.retrieval.ingest import normalize_text

log = logging.getLogger(__name__)

FAMILY = "reranker"


@dataclasses.dataclass(frozen=True)
class RerankerConfig:
  """One reranker run's model, data and loss settings (the trainer's: `TrainConfig.trainer`).

  Temperatures: see `gin_configs/reranker/base.gin` for the defaults and why.
  """
  checkpoint: str | None = None  # a Hugging Face BERT-family folder; None: packaged MiniLM
  scorer: scorer_lib.ScorerConfig = scorer_lib.ScorerConfig()
  candidates: data_lib.CandidateConfig = data_lib.CandidateConfig()
  loss: str = "kl"
  tau_target_start: float = 1.0
  tau_target_end: float = 1.0
  tau_model_start: float = 1.0
  tau_model_end: float = 1.0
  total_steps: int = 1  # the length of the temperature schedules: the run's training steps
  max_query_length: int = 64
  max_passage_length: int = 64
  max_pair_length: int = 128
  batch_size: int = 16
  eval_batch_size: int = 32
  dev_fraction: float = 0.05  # questions held out (with all their rationales) for KARD's accuracy
  seed: int = 0

  def schedules(self) -> tuple[model_lib.TemperatureSchedule, model_lib.TemperatureSchedule]:
    """(tau_target, tau_model); both are positive at every step by construction."""
    return (model_lib.TemperatureSchedule(self.tau_target_start, self.tau_target_end,
                                         self.total_steps),
            model_lib.TemperatureSchedule(self.tau_model_start, self.tau_model_end,
                                         self.total_steps))

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, obj: Mapping[str, Any]) -> "RerankerConfig":
    obj = dict(obj)
    obj["scorer"] = scorer_lib.ScorerConfig(**obj.get("scorer", {}))
    obj["candidates"] = data_lib.CandidateConfig(**obj.get("candidates", {}))
    return cls(**obj)


def encoder_folder(checkpoint: str | None) -> str:
  if checkpoint:
    return os.fspath(checkpoint)
  from kard_jax.models import minilm
  return minilm.packaged_minilm_dir()


def load_encoder(checkpoint: str | None):
  """(bert config, pretrained encoder params, WordPiece tokenizer) of a checkpoint folder."""
  folder = encoder_folder(checkpoint)
  bert_config, params = bert_weights.load_hf(folder)
  return bert_config, params, bert_tokenizer.load_tokenizer(folder)


def fingerprint(folder: str) -> str:
  """Identifies a checkpoint's weights cheaply: names, sizes and the first MiB of each file."""
  h = hashlib.sha256()
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      h.update(f"{name}:{os.path.getsize(path)}".encode())
      with open(path, "rb") as f:
        h.update(f.read(1 << 20))
  return h.hexdigest()[:16]


def build_model(config: RerankerConfig,
                bert_config: bert_lib.BertConfig) -> model_lib.RerankerModel:
  scorer = scorer_lib.make_scorer(config.scorer, bert_config)
  tau_target, tau_model = config.schedules()
  description = {"family": FAMILY, "config": config.to_json(),
                 "encoder": {"folder": encoder_folder(config.checkpoint)}}
  return model_lib.RerankerModel(scorer, config.scorer, tau_target, tau_model, loss=config.loss,
                       description=description)


def _encoder_slice(encoder_params: Any, start: int) -> Any:
  """The pretrained weights the scorer's encoder holds: all of them, or layers `start`.. only."""
  encoder = {k: v for k, v in encoder_params.items() if k != "pooler"}
  if start:
    encoder = {k: v for k, v in encoder.items()
               if k.startswith("layers_") and int(k.split("_")[1]) >= start}
  return encoder


def initial_params(model: model_lib.RerankerModel, encoder_params: Any, seed: int) -> Any:
  """Scorer params with the pretrained encoder and a freshly initialised compressor or head."""
  import flax.linen as nn

  variables = model.get_initial_variables(jax.random.PRNGKey(seed), model.default_input_shapes())
  params = dict(nn.meta.unbox(variables["params"]))
  encoder = _encoder_slice(encoder_params, getattr(model.module, "query_start_layer", 0))
  if jax.tree.map(np.shape, encoder) != jax.tree.map(np.shape, params["encoder"]):
    raise ValueError("pretrained encoder weights do not fit the scorer's encoder")
  params["encoder"] = encoder
  return params


def _frozen_encoder(bert_config: bert_lib.BertConfig, params: Any, num_layers: int):
  """A jitted (ids, mask) -> states of the pretrained encoder's first `num_layers` layers."""
  config = dataclasses.replace(bert_config, pooler=False, num_layers=num_layers)
  frozen = {k: v for k, v in params.items() if k != "pooler" and not (
      k.startswith("layers_") and int(k.split("_")[1]) >= num_layers)}
  module = bert_lib.Bert(config)
  return jax.jit(lambda i, m: module.apply({"params": frozen}, i, m,
                                           enable_dropout=False).hidden_states)


def make_tables(config: RerankerConfig, layout: str, index, positions: np.ndarray,
                questions: Sequence[str], tokenizer, *, encoder: tuple | None = None,
                query_start_layer: int = 0, cache_dir: str | None = None,
                show_progress: bool = True) -> data_lib.Tables:
  """Question ids, passage ids and, for a frozen passage side, the pretrained encoder's passage
  states (cached) and (layout "tail") the question states below `query_start_layer`."""
  positions = np.unique(np.asarray(positions, np.int64))
  questions = sorted(set(questions))
  q_ids = data_lib.tokenize(tokenizer, questions, config.max_query_length)
  texts = [index.passages[int(p)].index_text() for p in positions.tolist()]
  p_len = config.max_pair_length if layout == "pairs" else config.max_passage_length
  ids = data_lib.id_table(positions, data_lib.tokenize(tokenizer, texts, p_len))
  passage_states = query_states = None
  if layout in ("states", "tail"):
    if encoder is None:
      raise ValueError(f"the {layout!r} layout needs the frozen encoder (config, params)")
    bert_config, params = encoder
    parts = {"what": "frozen passage states", "encoder": fingerprint(encoder_folder(
        config.checkpoint)), "index": index.manifest.get("corpus_sha256", index.path),
        "max_passage_length": config.max_passage_length}
    encode = _frozen_encoder(bert_config, params, bert_config.num_layers)
    passage_states = data_lib.cached(
        cache_dir, parts, positions,
        lambda missing: data_lib.encode_table(data_lib.subset(ids, missing), encode,
                                                   show_progress=show_progress))
  if layout == "tail":
    q_table = data_lib.id_table(np.arange(len(questions)), q_ids)
    bottom = data_lib.encode_table(
        q_table, _frozen_encoder(encoder[0], encoder[1], query_start_layer),
        show_progress=show_progress, desc="encode questions")
    query_states = {q: np.asarray(bottom.get(i)) for i, q in enumerate(questions)}
  sep = tokenizer.token_to_id("[SEP]")
  return data_lib.Tables(layout, dict(zip(questions, q_ids)), ids, passage_states, query_states,
                max_query_length=config.max_query_length,
                max_passage_length=config.max_passage_length,
                max_pair_length=config.max_pair_length, sep_id=102 if sep is None else sep)


@dataclasses.dataclass(frozen=True)
class RerankerDatasetConfig:
  """What the trainer's `train()` accepts as a dataset config: builds a `RerankerInput`."""
  examples: tuple
  tables: data_lib.Tables
  candidates: data_lib.CandidateConfig
  batch_size: int
  seed: int | None = None

  def make_input(self, feature_converter_cls, shard_info, training, seed):
    del feature_converter_cls  # the reranker reads no SeqIO features
    return data_lib.RerankerInput(self.examples, self.tables, self.candidates, self.batch_size,
                                  training, self.seed if self.seed is not None else seed,
                                  shard_info)


def read_config(model_dir: str) -> RerankerConfig:
  """The RerankerConfig a run directory was trained with (from its model_config.json)."""
  from kard_jax.training import checkpoints as ckpt_lib

  path = os.path.join(model_dir, ckpt_lib.MODEL_CONFIG)
  try:
    description = ckpt_lib.read_model_config(model_dir)
  except FileNotFoundError:
    raise InputError(model_dir, "no model_config.json: not a reranker run directory") from None
  if description.get("family") != FAMILY:
    raise InputError(path, f"family is {description.get('family')!r}, not {FAMILY!r}")
  try:
    return RerankerConfig.from_json(description["config"])
  except (KeyError, TypeError, ValueError) as e:
    raise InputError(path, f"unreadable reranker config ({e})") from None


def restore(model_dir: str) -> tuple[RerankerConfig, model_lib.RerankerModel, Any, int, Any, Any]:
  """(config, model, params, step, bert_config, tokenizer) of a trained run's newest checkpoint."""
  from kard_jax.training import checkpoints as ckpt_lib

  config = read_config(model_dir)
  folder = encoder_folder(config.checkpoint)
  with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
    bert_config = bert_weights.config_from_hf(json.load(f))
  model = build_model(config, bert_config)
  abstract = jax.eval_shape(lambda: initial_params_shapes(model))
  try:
    path, step = ckpt_lib.latest_checkpoint_dir(model_dir)
  except FileNotFoundError:
    raise InputError(model_dir, "no checkpoint yet; train first (`kard rerank train`)") from None
  params = ckpt_lib.restore_params(os.path.join(path, "params"), abstract)
  return config, model, params, step, bert_config, bert_tokenizer.load_tokenizer(folder)


def initial_params_shapes(model: model_lib.RerankerModel) -> Any:
  import flax.linen as nn
  variables = model.get_initial_variables(jax.random.PRNGKey(0), model.default_input_shapes())
  return nn.meta.unbox(variables["params"])



def _path(data_dir: str, *parts: str) -> str:
  path = os.path.join(data_dir, *parts)
  if not os.path.exists(path):
    raise InputError(path, "not found; prepare the benchmark first (`kard data prepare`)")
  return path


def default_cache_dir(data_dir: str) -> str:
  return os.path.join(data_dir, "cache", "reranker")


def training_pairs(data_dir: str) -> list[data_lib.Pair]:
  """(question, rationale) pairs of the train split, in file order."""
  examples = {ex.id: ex for ex in read_examples(_path(data_dir, "examples", "train.jsonl"))}
  path = _path(data_dir, "rationales", "train.jsonl")
  pairs = []
  for r in read_rationales(path):
    if r.id not in examples:
      raise InputError(path, f"rationale for {r.id!r}, which is not a train example")
    pairs.append(data_lib.Pair(r.id, r.sample, examples[r.id].question, r.rationale))
  if not pairs:
    raise InputError(path, "no rationales to train the reranker on")
  return pairs


def split_examples(config: RerankerConfig, index, data_dir: str,
                   show_progress: bool = True, *, train: bool = True):
  """(train examples, dev examples): candidate lists of the pairs, dev held out by question
  (`train=False` skips building the training side: evaluation needs only dev)."""
  train_pairs, dev_pairs = data_lib.holdout(training_pairs(data_dir), config.dev_fraction,
                                            config.seed)
  build = lambda pairs: data_lib.build_examples(  # noqa: E731
      index, pairs, config.candidates, show_progress=show_progress) if pairs else []
  return (build(train_pairs) if train else []), build(dev_pairs)


# The trainer's arguments that the run itself sets (everything else comes from `TrainConfig`).
_SET_BY_THE_RUN = ("model", "model_dir", "train_dataset_cfg", "train_eval_dataset_cfg",
                   "init_checkpoint", "random_seed", "show_progress")


@dataclasses.dataclass(frozen=True)
class RunPaths:
  """Where a run reads and writes: a prepared benchmark, its BM25 index and the run directory."""
  data_dir: str
  index_dir: str
  model_dir: str
  cache_dir: str | None = None  # passage states/vectors (default DATA/cache/reranker)

  @property
  def cache(self) -> str:
    return self.cache_dir or default_cache_dir(self.data_dir)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything `train` needs besides paths: the reranker's settings and the shared trainer's
  keyword arguments (`kard_jax.training.train.train`: steps, optimizer, learning rate, periods).

  `trainer` holds every trainer argument that `_SET_BY_THE_RUN` does not, so a call never falls
  back on whatever gin's global config holds at the time. `gin_config` is the gin text the
  settings were read from (written to the run directory as config.gin), or "".
  """
  reranker: RerankerConfig = RerankerConfig()
  trainer: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  gin_config: str = ""

  @classmethod
  def from_gin(cls) -> "TrainConfig":
    """The settings bound in gin's global config, evaluated now into plain objects.

    Call it at the process edge, right after parsing the reranker's gin files (`kard rerank
    train` after its flags, the pipeline before its stages run): `RerankerConfig` takes the
    bindings of `stage.RerankerConfig` (references such as `@scorer.ScorerConfig()` evaluated),
    `trainer` those of `train.train` (e.g. `@model.adamw_with_head()` and the learning-rate
    schedule, evaluated), filled with the trainer's defaults.
    """
    import gin  # pylint: disable=import-outside-toplevel

    from kard_jax.training import train as train_script  # pylint: disable=import-outside-toplevel

    reranker = RerankerConfig(**_gin_bindings(RerankerConfig))
    bound = _gin_bindings(train_script.train)
    trainer = {}
    for name, param in inspect.signature(train_script.train).parameters.items():
      if name in _SET_BY_THE_RUN:
        continue
      if name in bound:
        trainer[name] = bound[name]
      elif param.default is not inspect.Parameter.empty:
        trainer[name] = param.default
    trainer.setdefault("total_steps", reranker.total_steps)
    return cls(reranker, trainer, gin.config_str())


def _gin_bindings(fn_or_cls) -> dict[str, Any]:
  """gin's bindings of a configurable with references evaluated ({} when gin never saw it)."""
  import gin  # pylint: disable=import-outside-toplevel

  try:
    return dict(gin.get_bindings(fn_or_cls))
  except ValueError:  # not registered: no gin file mentions it
    return {}


def train(config: TrainConfig, paths: RunPaths, *, show_progress: bool = True):
  """Builds the candidate data and the model, then runs the shared trainer to
  `config.trainer["total_steps"]` (resuming `paths.model_dir`); returns its `TrainResult`."""
  from kard_jax.training import checkpoints as ckpt_lib  # pylint: disable=import-outside-toplevel
  from kard_jax.training import train as train_script  # pylint: disable=import-outside-toplevel

  rr = config.reranker
  index = bm25_index.load_index(paths.index_dir)
  train_examples, dev_examples = split_examples(rr, index, paths.data_dir, show_progress)
  bert_config, encoder_params, tokenizer = load_encoder(rr.checkpoint)
  model = build_model(rr, bert_config)
  everything = train_examples + dev_examples
  tables = make_tables(
      rr, model.layout, index, data_lib.candidate_positions(everything),
      [e.question for e in everything], tokenizer, encoder=(bert_config, encoder_params),
      query_start_layer=getattr(model.module, "query_start_layer", 0), cache_dir=paths.cache,
      show_progress=show_progress)
  init_dir = os.path.join(os.path.abspath(paths.model_dir), "pretrained_params")
  if not os.path.isdir(init_dir):
    ckpt_lib.save_params(init_dir, initial_params(model, encoder_params, rr.seed))
  dataset = lambda examples, batch: RerankerDatasetConfig(  # noqa: E731
      tuple(examples), tables, rr.candidates, batch, rr.seed)
  trainer = dict(config.trainer)
  trainer.setdefault("total_steps", rr.total_steps)
  result = train_script.train(
      model=model, model_dir=paths.model_dir,
      train_dataset_cfg=dataset(train_examples, rr.batch_size),
      train_eval_dataset_cfg=dataset(dev_examples, rr.eval_batch_size) if dev_examples else None,
      init_checkpoint=init_dir, random_seed=rr.seed, show_progress=show_progress, **trainer)
  if config.gin_config:
    ckpt_lib.write_text(paths.model_dir, ckpt_lib.GIN_CONFIG, config.gin_config)
  return result


def load_reranker(model_dir: str, index, positions: np.ndarray, questions: Sequence[str],
                  cache_dir: str, show_progress: bool = True):
  """(config, Reranker) of a trained run, with tables covering `positions` and `questions`."""
  config, model, params, step, bert_config, tokenizer = restore(model_dir)
  encoder = None
  if model.layout in ("states", "tail"):
    _, encoder_params, _ = load_encoder(config.checkpoint)
    encoder = (bert_config, encoder_params)
  tables = make_tables(config, model.layout, index, positions, questions, tokenizer,
                                 encoder=encoder,
                                 query_start_layer=getattr(model.module, "query_start_layer", 0),
                                 cache_dir=cache_dir, show_progress=show_progress)
  tag = f"{os.path.abspath(model_dir)}@{step}"
  reranker = inference_lib.Reranker(model, params, tables, cache_dir=cache_dir, cache_tag=tag,
                                show_progress=show_progress)
  return config, reranker, step


def _ceiling_rationales(path: str, examples) -> dict[int, list[str]]:
  """Teacher rationales per example position, joined by question text (else by id)."""
  by_question = {}
  for i, ex in enumerate(examples):
    by_question.setdefault(normalize_text(ex.question), i)
  by_id = {ex.id: i for i, ex in enumerate(examples)}
  out: dict[int, list[str]] = {}
  for r in gold_lib.load_rationales(path):
    i = by_question.get(normalize_text(r.question)) if r.question else by_id.get(r.id)
    if i is not None:
      out.setdefault(i, []).append(r.text)
  return out


def _gold(index, data_dir: str, split: str, golden: Sequence[str] | None):
  if golden:
    return gold_lib.strategyqa_gold(list(golden), gold_lib.text_index(index.passages))
  return gold_lib.examples_gold([_path(data_dir, "examples", f"{split}.jsonl")])


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """What `evaluate` measures (see `metrics.py`)."""
  split: str = "validation"  # held-out questions
  golden: tuple[str, ...] | None = None  # StrategyQA golden_sentences_*.json (default: examples')
  ceiling_rationales: str | None = None  # teacher rationales for the rationale-BM25 ceiling
  top_n: int = 100  # question-BM25 candidates to rerank
  ks: tuple[int, ...] = tuple(metrics_lib.DEFAULT_KS)
  fusion_weight: float = 0.0  # > 0: also a row for reranker + question BM25 fused


def evaluate(paths: RunPaths, config: EvalConfig = EvalConfig(), *,
             show_progress: bool = True) -> dict:
  """The recall table on `config.split`; on the dev questions (train questions held out from the
  reranker's training, whose rationales give the ceiling) the recall table and KARD's accuracy."""
  data_dir, model_dir = paths.data_dir, paths.model_dir
  split, golden, top_n, ks = config.split, config.golden, config.top_n, config.ks
  fusion_weight = config.fusion_weight
  ceiling_rationales = config.ceiling_rationales
  index = bm25_index.load_index(paths.index_dir)
  examples = read_examples(_path(data_dir, "examples", f"{split}.jsonl"))
  gold = metrics_lib.gold_for_examples(examples, _gold(index, data_dir, split, golden))
  rr = read_config(model_dir)
  _, dev_examples = split_examples(rr, index, data_dir, show_progress, train=False)
  dev_ids = {e.example_id for e in dev_examples}
  dev_questions = [ex for ex in read_examples(_path(data_dir, "examples", "train.jsonl"))
                   if ex.id in dev_ids]
  questions = [ex.question for ex in examples]
  everything = questions + [ex.question for ex in dev_questions]
  candidates = [h[0] for h in index.search(everything, top_n)]
  positions = np.unique(np.concatenate(
      candidates + [data_lib.candidate_positions(dev_examples)]))
  rr, reranker, step = load_reranker(model_dir, index, positions, everything, paths.cache,
                                     show_progress)
  rationales = _ceiling_rationales(ceiling_rationales, examples) if ceiling_rationales else None
  result = {
      "split": split, "questions": len(examples), "checkpoint_step": step, "top_n": top_n,
      "fusion_weight": fusion_weight,
      "recall": metrics_lib.recall_table(index, reranker, questions, gold, top_n=top_n, ks=ks,
                                         rationales=rationales or None,
                                         fusion_weight=fusion_weight),
  }
  if dev_examples:
    dev_gold = metrics_lib.gold_for_examples(dev_questions, _gold(index, data_dir, "train", golden))
    dev_rationales: dict[int, list[str]] = {}
    position = {ex.id: i for i, ex in enumerate(dev_questions)}
    for e in training_pairs(data_dir):
      if e.example_id in position:
        dev_rationales.setdefault(position[e.example_id], []).append(e.rationale)
    result["dev"] = {
        "questions": len(dev_questions),
        "recall": metrics_lib.recall_table(
            index, reranker, [ex.question for ex in dev_questions], dev_gold, top_n=top_n, ks=ks,
            rationales=dev_rationales, fusion_weight=fusion_weight),
        "kard_accuracy": metrics_lib.kard_table(index, reranker, dev_examples, rr.candidates,
                                                rr.seed)}
  return result


@dataclasses.dataclass(frozen=True)
class ApplyConfig:
  """Which splits `apply` reranks, and how."""
  splits: tuple[str, ...] = ("validation", "test")
  top_n: int = retrieve.DEFAULT_CANDIDATES  # question-BM25 candidates to rerank
  top_k: int = 10  # passages kept per question
  bm25_weight: float = 0.0  # > 0: rank by reranker + this weight x question BM25 (z-scores)


def apply(paths: RunPaths, config: ApplyConfig = ApplyConfig(), *,
          show_progress: bool = True) -> dict:
  """Writes DATA/retrieval/reranked_{split}.jsonl: question -> BM25 top-N -> reranked top-k;
  returns the checkpoint step used and each file written."""
  data_dir, splits, top_n = paths.data_dir, config.splits, config.top_n
  index = bm25_index.load_index(paths.index_dir)
  per_split = {s: read_examples(_path(data_dir, "examples", f"{s}.jsonl")) for s in splits}
  hits = {s: index.search([retrieve.question_query(e) for e in ex], top_n)
          for s, ex in per_split.items()}
  positions = np.unique(np.concatenate([h[0] for hs in hits.values() for h in hs] or
                                       [np.zeros(0, np.int64)]))
  questions = [e.question for ex in per_split.values() for e in ex]
  _, reranker, step = load_reranker(paths.model_dir, index, positions, questions, paths.cache,
                                    show_progress)
  out = {"checkpoint_step": step, "files": {}}
  for s, examples in per_split.items():
    ranked = reranker.rerank([e.question for e in examples], hits[s], config.top_k,
                             config.bm25_weight)
    records = [retrieve.to_record(index, e.id, None, "reranked", h)
               for e, h in zip(examples, ranked)]
    path = os.path.join(data_dir, "retrieval", f"reranked_{s}.jsonl")
    retrieval_file.write_retrieval_file(path, records)
    out["files"][s] = {"path": path, "questions": len(records)}
  return out
