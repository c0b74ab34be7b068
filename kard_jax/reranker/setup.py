"""Assembling a reranker run: encoder weights, model, tables, trainer inputs; and rebuilding it.

Everything here takes plain arguments; `kard rerank` (pipeline/commands/rerank.py) binds them
with gin. A run directory holds the trainer's checkpoints plus `model_config.json`, whose
`config` is `RerankerConfig.to_json()` and the encoder checkpoint it started from, so evaluation
and inference rebuild the same model without the gin files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from kard_jax.data.errors import InputError
from kard_jax.models import bert as bert_lib
from kard_jax.models import bert_tokenizer, bert_weights
from kard_jax.reranker import data as data_lib
from kard_jax.reranker import loss as loss_lib
from kard_jax.reranker import passage_cache
from kard_jax.reranker import scorer as scorer_lib
from kard_jax.reranker.inputs import RerankerInput, Tables
from kard_jax.reranker.model import RerankerModel

FAMILY = "reranker"


@dataclasses.dataclass(frozen=True)
class RerankerConfig:
  """One reranker run's model, data and loss settings (the trainer's settings live in gin).

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

  def schedules(self) -> tuple[loss_lib.TemperatureSchedule, loss_lib.TemperatureSchedule]:
    """(tau_target, tau_model); both are positive at every step by construction."""
    return (loss_lib.TemperatureSchedule(self.tau_target_start, self.tau_target_end,
                                         self.total_steps),
            loss_lib.TemperatureSchedule(self.tau_model_start, self.tau_model_end,
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


def build_model(config: RerankerConfig, bert_config: bert_lib.BertConfig) -> RerankerModel:
  scorer = scorer_lib.make_scorer(config.scorer, bert_config)
  tau_target, tau_model = config.schedules()
  description = {"family": FAMILY, "config": config.to_json(),
                 "encoder": {"folder": encoder_folder(config.checkpoint)}}
  return RerankerModel(scorer, config.scorer, tau_target, tau_model, loss=config.loss,
                       description=description)


def _encoder_slice(encoder_params: Any, start: int) -> Any:
  """The pretrained weights the scorer's encoder holds: all of them, or layers `start`.. only."""
  encoder = {k: v for k, v in encoder_params.items() if k != "pooler"}
  if start:
    encoder = {k: v for k, v in encoder.items()
               if k.startswith("layers_") and int(k.split("_")[1]) >= start}
  return encoder


def initial_params(model: RerankerModel, encoder_params: Any, seed: int) -> Any:
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
                show_progress: bool = True) -> Tables:
  """Question ids, passage ids and, for a frozen passage side, the pretrained encoder's passage
  states (cached) and (layout "tail") the question states below `query_start_layer`."""
  positions = np.unique(np.asarray(positions, np.int64))
  questions = sorted(set(questions))
  q_ids = passage_cache.tokenize(tokenizer, questions, config.max_query_length)
  texts = [index.passages[int(p)].index_text() for p in positions.tolist()]
  p_len = config.max_pair_length if layout == "pairs" else config.max_passage_length
  ids = passage_cache.id_table(positions, passage_cache.tokenize(tokenizer, texts, p_len))
  passage_states = query_states = None
  if layout in ("states", "tail"):
    if encoder is None:
      raise ValueError(f"the {layout!r} layout needs the frozen encoder (config, params)")
    bert_config, params = encoder
    parts = {"what": "frozen passage states", "encoder": fingerprint(encoder_folder(
        config.checkpoint)), "index": index.manifest.get("corpus_sha256", index.path),
        "max_passage_length": config.max_passage_length}
    encode = _frozen_encoder(bert_config, params, bert_config.num_layers)
    passage_states = passage_cache.cached(
        cache_dir, parts, positions,
        lambda missing: passage_cache.encode_table(passage_cache.subset(ids, missing), encode,
                                                   show_progress=show_progress))
  if layout == "tail":
    q_table = passage_cache.id_table(np.arange(len(questions)), q_ids)
    bottom = passage_cache.encode_table(
        q_table, _frozen_encoder(encoder[0], encoder[1], query_start_layer),
        show_progress=show_progress, desc="encode questions")
    query_states = {q: np.asarray(bottom.get(i)) for i, q in enumerate(questions)}
  sep = tokenizer.token_to_id("[SEP]")
  return Tables(layout, dict(zip(questions, q_ids)), ids, passage_states, query_states,
                max_query_length=config.max_query_length,
                max_passage_length=config.max_passage_length,
                max_pair_length=config.max_pair_length, sep_id=102 if sep is None else sep)


@dataclasses.dataclass(frozen=True)
class RerankerDatasetConfig:
  """What the trainer's `train()` accepts as a dataset config: builds a `RerankerInput`."""
  examples: tuple
  tables: Tables
  candidates: data_lib.CandidateConfig
  batch_size: int
  seed: int | None = None

  def make_input(self, feature_converter_cls, shard_info, training, seed):
    del feature_converter_cls  # the reranker reads no SeqIO features
    return RerankerInput(self.examples, self.tables, self.candidates, self.batch_size, training,
                         self.seed if self.seed is not None else seed, shard_info)


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


def restore(model_dir: str) -> tuple[RerankerConfig, RerankerModel, Any, int, Any, Any]:
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


def initial_params_shapes(model: RerankerModel) -> Any:
  import flax.linen as nn
  variables = model.get_initial_variables(jax.random.PRNGKey(0), model.default_input_shapes())
  return nn.meta.unbox(variables["params"])
