"""The reranker's three stages over a prepared benchmark directory: train, evaluate, apply.

Plain arguments throughout; `kard rerank` binds them from the command line and gin. Layout read:
  DATA/examples/{split}.jsonl, DATA/rationales/train.jsonl   questions and teacher rationales
  INDEX/                                                     the BM25 index (`kard retrieval build`)
and written: the run directory (trainer checkpoints, summaries, model_config.json),
DATA/retrieval/reranked_{split}.jsonl (apply) and a cache of passage states and vectors.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np

from kard_jax.data.errors import InputError
from kard_jax.data.example import read_examples
from kard_jax.data.rationale import read_rationales
from kard_jax.reranker import apply as apply_lib
from kard_jax.reranker import data as data_lib
from kard_jax.reranker import evaluate as eval_lib
from kard_jax.reranker import setup as setup_lib
from kard_jax.retrieval import bm25_index
from kard_jax.retrieval import gold as gold_lib
from kard_jax.retrieval import retrieval_file, retrieve
from kard_jax.retrieval.ingest import normalize_text

log = logging.getLogger(__name__)


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


def split_examples(config: setup_lib.RerankerConfig, index, data_dir: str,
                   show_progress: bool = True, *, train: bool = True):
  """(train examples, dev examples): candidate lists of the pairs, dev held out by question
  (`train=False` skips building the training side: evaluation needs only dev)."""
  train_pairs, dev_pairs = data_lib.holdout(training_pairs(data_dir), config.dev_fraction,
                                            config.seed)
  build = lambda pairs: data_lib.build_examples(  # noqa: E731
      index, pairs, config.candidates, show_progress=show_progress) if pairs else []
  return (build(train_pairs) if train else []), build(dev_pairs)


def train(config: setup_lib.RerankerConfig, *, data_dir: str, model_dir: str, index_dir: str,
          cache_dir: str | None = None, show_progress: bool = True, **train_kwargs: Any):
  """Builds the candidate data and the model, then runs the shared trainer.

  `train_kwargs` go to `kard_jax.training.train.train` (unset ones come from gin there).
  """
  from kard_jax.training import checkpoints as ckpt_lib
  from kard_jax.training import train as train_script

  index = bm25_index.load_index(index_dir)
  cache_dir = cache_dir or default_cache_dir(data_dir)
  train_examples, dev_examples = split_examples(config, index, data_dir, show_progress)
  bert_config, encoder_params, tokenizer = setup_lib.load_encoder(config.checkpoint)
  model = setup_lib.build_model(config, bert_config)
  everything = train_examples + dev_examples
  tables = setup_lib.make_tables(
      config, model.layout, index, data_lib.candidate_positions(everything),
      [e.question for e in everything], tokenizer, encoder=(bert_config, encoder_params),
      query_start_layer=getattr(model.module, "query_start_layer", 0), cache_dir=cache_dir,
      show_progress=show_progress)
  init_dir = os.path.join(os.path.abspath(model_dir), "pretrained_params")
  if not os.path.isdir(init_dir):
    ckpt_lib.save_params(init_dir, setup_lib.initial_params(model, encoder_params, config.seed))
  dataset = lambda examples, batch: setup_lib.RerankerDatasetConfig(  # noqa: E731
      tuple(examples), tables, config.candidates, batch, config.seed)
  kwargs = dict(train_kwargs)
  if dev_examples:
    kwargs.setdefault("train_eval_dataset_cfg", dataset(dev_examples, config.eval_batch_size))
  kwargs.setdefault("total_steps", config.total_steps)
  kwargs.setdefault("show_progress", show_progress)
  return train_script.train(model=model, model_dir=model_dir,
                            train_dataset_cfg=dataset(train_examples, config.batch_size),
                            init_checkpoint=init_dir, random_seed=config.seed, **kwargs)


def load_reranker(model_dir: str, index, positions: np.ndarray, questions: Sequence[str],
                  cache_dir: str, show_progress: bool = True):
  """(config, Reranker) of a trained run, with tables covering `positions` and `questions`."""
  config, model, params, step, bert_config, tokenizer = setup_lib.restore(model_dir)
  encoder = None
  if model.layout in ("states", "tail"):
    _, encoder_params, _ = setup_lib.load_encoder(config.checkpoint)
    encoder = (bert_config, encoder_params)
  tables = setup_lib.make_tables(config, model.layout, index, positions, questions, tokenizer,
                                 encoder=encoder,
                                 query_start_layer=getattr(model.module, "query_start_layer", 0),
                                 cache_dir=cache_dir, show_progress=show_progress)
  tag = f"{os.path.abspath(model_dir)}@{step}"
  reranker = apply_lib.Reranker(model, params, tables, cache_dir=cache_dir, cache_tag=tag,
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


def evaluate(*, data_dir: str, model_dir: str, index_dir: str, cache_dir: str | None = None,
             split: str = "validation", golden: Sequence[str] | None = None,
             ceiling_rationales: str | None = None, top_n: int = 100,
             ks: Sequence[int] = eval_lib.DEFAULT_KS, fusion_weight: float = 0.0,
             show_progress: bool = True) -> dict:
  """The recall table on `split`; on the dev questions (train questions held out from the
  reranker's training, whose rationales give the ceiling) the recall table and KARD's accuracy."""
  index = bm25_index.load_index(index_dir)
  cache_dir = cache_dir or default_cache_dir(data_dir)
  examples = read_examples(_path(data_dir, "examples", f"{split}.jsonl"))
  gold = eval_lib.gold_for_examples(examples, _gold(index, data_dir, split, golden))
  config = setup_lib.read_config(model_dir)
  _, dev_examples = split_examples(config, index, data_dir, show_progress, train=False)
  dev_ids = {e.example_id for e in dev_examples}
  dev_questions = [ex for ex in read_examples(_path(data_dir, "examples", "train.jsonl"))
                   if ex.id in dev_ids]
  questions = [ex.question for ex in examples]
  everything = questions + [ex.question for ex in dev_questions]
  candidates = [h[0] for h in index.search(everything, top_n)]
  positions = np.unique(np.concatenate(
      candidates + [data_lib.candidate_positions(dev_examples)]))
  config, reranker, step = load_reranker(model_dir, index, positions, everything, cache_dir,
                                         show_progress)
  rationales = _ceiling_rationales(ceiling_rationales, examples) if ceiling_rationales else None
  result = {
      "split": split, "questions": len(examples), "checkpoint_step": step, "top_n": top_n,
      "fusion_weight": fusion_weight,
      "recall": eval_lib.recall_table(index, reranker, questions, gold, top_n=top_n, ks=ks,
                                      rationales=rationales or None,
                                      fusion_weight=fusion_weight),
  }
  if dev_examples:
    dev_gold = eval_lib.gold_for_examples(dev_questions, _gold(index, data_dir, "train", golden))
    dev_rationales: dict[int, list[str]] = {}
    position = {ex.id: i for i, ex in enumerate(dev_questions)}
    for e in training_pairs(data_dir):
      if e.example_id in position:
        dev_rationales.setdefault(position[e.example_id], []).append(e.rationale)
    result["dev"] = {
        "questions": len(dev_questions),
        "recall": eval_lib.recall_table(index, reranker, [ex.question for ex in dev_questions],
                                        dev_gold, top_n=top_n, ks=ks, rationales=dev_rationales,
                                        fusion_weight=fusion_weight),
        "kard_accuracy": eval_lib.kard_table(index, reranker, dev_examples, config.candidates,
                                             config.seed)}
  return result


def apply(*, data_dir: str, model_dir: str, index_dir: str, cache_dir: str | None = None,
          splits: Sequence[str] = ("validation", "test"), top_n: int = retrieve.DEFAULT_CANDIDATES,
          top_k: int = 10, bm25_weight: float = 0.0, show_progress: bool = True) -> dict:
  """Writes DATA/retrieval/reranked_{split}.jsonl: question -> BM25 top-N -> reranked top-k."""
  index = bm25_index.load_index(index_dir)
  cache_dir = cache_dir or default_cache_dir(data_dir)
  per_split = {s: read_examples(_path(data_dir, "examples", f"{s}.jsonl")) for s in splits}
  hits = {s: index.search([retrieve.question_query(e) for e in ex], top_n)
          for s, ex in per_split.items()}
  positions = np.unique(np.concatenate([h[0] for hs in hits.values() for h in hs] or
                                       [np.zeros(0, np.int64)]))
  questions = [e.question for ex in per_split.values() for e in ex]
  _, reranker, step = load_reranker(model_dir, index, positions, questions, cache_dir,
                                    show_progress)
  out = {"checkpoint_step": step, "files": {}}
  for s, examples in per_split.items():
    ranked = reranker.rerank([e.question for e in examples], hits[s], top_k, bm25_weight)
    records = [retrieve.to_record(index, e.id, None, "reranked", h)
               for e, h in zip(examples, ranked)]
    path = os.path.join(data_dir, "retrieval", f"reranked_{s}.jsonl")
    retrieval_file.write_retrieval_file(path, records)
    out["files"][s] = {"path": path, "questions": len(records)}
  return out
