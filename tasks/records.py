"""Rows of text for each method's task, built from a prepared benchmark directory.

A row is a flat dict of strings: `inputs`, `targets` (the prompt texts of `kard_jax.data.prompts`)
plus what the metric needs to score a prediction without the model's help: `id`, `answer` (the
gold label) and `choices` (JSON `[[label, text], ...]`); `sample` is the rationale's index (-1 for
rows not made from one). Training rows for rationale methods are one per (example, kept rationale),
evaluation rows one per example.

Files read, all under the benchmark directory DATA/<benchmark>/:
  examples/{split}.jsonl                         every task
  rationales/train.jsonl                         training rows of rationale tasks (KARD filter)
  retrieval/rationale_train.jsonl                KARD training passages (rationale as query)
  retrieval/question_{split}.jsonl               kard_bm25 evaluation passages
  retrieval/reranked_{split}.jsonl               kard_rerank evaluation passages
  rationales/scicot_{split}.jsonl                Sci-CoT stage-1 rationales for stage-2 evaluation
                                                 (a missing one is an error naming the commands
                                                 that write it: validation feeds T5X's train-eval)
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping

from kard_jax.data import jsonl, prompts
from kard_jax.data.answers import filter_rationales
from kard_jax.data.errors import InputError
from kard_jax.data.example import Example, read_examples
from kard_jax.data.rationale import Rationale, read_rationales

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """How one method's rows are made (file names are relative to the benchmark directory)."""
  method: str  # a `prompts.METHODS` entry
  per_rationale: bool  # training rows: one per kept rationale (else one per example)
  train_passages: str | None = None  # retrieval file keyed by (id, sample)
  eval_passages: str | None = None  # retrieval file pattern keyed by id, "{split}" filled in
  eval_rationales: str | None = None  # rationale file pattern for evaluation inputs


# Task name suffix -> spec. Names are kard_<benchmark>_<suffix>.
TASKS: dict[str, TaskSpec] = {
    "answer_only": TaskSpec("answer_only", per_rationale=False),
    "reasoning": TaskSpec("reasoning", per_rationale=True),
    "multitask_rationale": TaskSpec("multitask_rationale", per_rationale=True),
    "multitask_answer": TaskSpec("multitask_answer", per_rationale=False),
    "kard_bm25": TaskSpec("kard", True, "retrieval/rationale_train.jsonl",
                          "retrieval/question_{split}.jsonl"),
    "kard_rerank": TaskSpec("kard", True, "retrieval/rationale_train.jsonl",
                            "retrieval/reranked_{split}.jsonl"),
    "scicot_rationale": TaskSpec("scicot_rationale", per_rationale=True),
    "scicot_answer": TaskSpec("scicot_answer", True,
                              eval_rationales="rationales/scicot_{split}.jsonl"),
}


def read_passages(path) -> dict[tuple[str, int | None], list[str]]:
  """A retrieval file as {(example id, sample or None): passage texts, best first}."""
  out: dict[tuple[str, int | None], list[str]] = {}
  for lineno, obj in jsonl.iter_jsonl(path):
    if "id" not in obj or not isinstance(obj.get("passages"), list):
      raise InputError(path, "a retrieval line needs 'id' and a 'passages' list", lineno)
    sample = obj.get("sample")
    try:
      texts = [str(p["text"]) for p in obj["passages"]]
    except (KeyError, TypeError):
      raise InputError(path, "every passage needs a 'text'", lineno) from None
    out[(str(obj["id"]), None if sample is None else int(sample))] = texts
  return out


def _lookup(table: Mapping[tuple[str, int | None], list[str]], path: str, example_id: str,
            sample: int | None) -> list[str]:
  """The passages stored under exactly (example_id, sample): a training row reads those its own
  rationale retrieved, an evaluation row (sample None) those of its question; never another's."""
  key = (example_id, sample)
  if key in table:
    return table[key]
  what = f"example {example_id!r}" + ("" if sample is None else f" rationale sample {sample}")
  raise InputError(path, f"no passages for {what} (key {{'id': {example_id!r}, 'sample': "
                   f"{'null' if sample is None else sample}}})")


def _row(example: Example, inputs: str, targets: str, sample: int = -1) -> dict[str, Any]:
  return {"id": example.id, "sample": sample, "inputs": inputs, "targets": targets,
          "answer": example.answer,
          "choices": json.dumps([[c.label, c.text] for c in example.choices], ensure_ascii=False)}


def kept_rationales(data_dir: str, examples: list[Example],
                    max_rationales: int | None) -> list[Rationale]:
  path = os.path.join(data_dir, "rationales", "train.jsonl")
  by_id = {ex.id: ex for ex in examples}
  return filter_rationales(read_rationales(path), by_id, max_rationales)


def missing_stage1_message(data_dir: str, split: str) -> str:
  """Why a Sci-CoT stage-2 split cannot be read yet, and the commands that write its inputs."""
  benchmark = os.path.basename(os.path.normpath(data_dir))
  return (f"file not found: Sci-CoT stage 2 (kard_{benchmark}_scicot_answer) reads stage 1's "
          f"rationales for the {split} split. `kard pipeline` writes them; with T5X, decode stage 1 "
          f"on this split and convert its predictions: python -m t5x.infer "
          f"--gin_search_paths=$PWD --gin_file=gin_configs/t5x/kard_t5_infer.gin "
          f"--gin.MIXTURE_OR_TASK_NAME=\"'kard_{benchmark}_scicot_rationale'\" "
          f"--gin.utils.DatasetConfig.split=\"'{split}'\" --gin.CHECKPOINT_PATH=... "
          f"--gin.INFER_OUTPUT_DIR=\"'OUT'\" && python -m kard_jax.interop.t5x_rationales "
          f"--data_dir {data_dir} --split {split} "
          f"--infer_file OUT/kard_{benchmark}_scicot_rationale-predict.jsonl-00000-of-00001"
          + (" (or train stage 2 without train-eval: --gin.train.train_eval_dataset_cfg=None)"
             if split == "validation" else ""))


def build_rows(spec: TaskSpec, data_dir, split: str, *, num_passages: int = 3,
               max_rationales: int | None = None, max_input_length: int | None = None,
               count_tokens: Callable[[str], int] | None = None) -> list[dict[str, Any]]:
  """The rows of one split of one task, in the examples file's order.

  With `max_input_length` (and `count_tokens`, the task vocabulary's token count) every input is
  made to fit that many tokens by `prompts.fit_inputs`, for training and evaluation alike.
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
  data_dir = os.fspath(data_dir)
  examples_path = os.path.join(data_dir, "examples", f"{split}.jsonl")
  examples = read_examples(examples_path)
  method = spec.method

  def render_inputs(ex: Example, **context) -> str:
    try:
      return prompts.fit_inputs(method, ex, count_tokens=count_tokens,
                                max_tokens=max_input_length, **context)
    except prompts.InputTooLong as e:
      raise InputError(examples_path, str(e)) from None

  if split == "train" and spec.per_rationale:
    passages, ppath = {}, ""
    if spec.train_passages:
      ppath = os.path.join(data_dir, spec.train_passages)
      passages = read_passages(ppath)
    by_id = {ex.id: ex for ex in examples}
    rows = []
    for r in kept_rationales(data_dir, examples, max_rationales):
      ex = by_id[r.id]
      texts = _lookup(passages, ppath, ex.id, r.sample)[:num_passages] if ppath else ()
      inputs = render_inputs(ex, passages=texts, rationale=r.rationale)
      rows.append(_row(ex, inputs, prompts.render_target(method, ex, r.rationale), r.sample))
    return rows

  if split == "train" or not (spec.eval_passages or spec.eval_rationales):
    return [_row(ex, render_inputs(ex), prompts.render_target(method, ex))
            for ex in examples]

  rows = []
  if spec.eval_passages:
    ppath = os.path.join(data_dir, spec.eval_passages.format(split=split))
    passages = read_passages(ppath)
    for ex in examples:
      texts = _lookup(passages, ppath, ex.id, None)[:num_passages]
      rows.append(_row(ex, render_inputs(ex, passages=texts),
                       prompts.render_target(method, ex)))
    return rows
  rpath = os.path.join(data_dir, spec.eval_rationales.format(split=split))
  if not os.path.exists(rpath):
    raise InputError(rpath, missing_stage1_message(data_dir, split))
  generated: dict[str, Rationale] = {}
  for r in read_rationales(rpath):
    if r.id not in generated or r.sample < generated[r.id].sample:
      generated[r.id] = r
  for ex in examples:
    if ex.id not in generated:
      raise InputError(rpath, f"no rationale for example {ex.id!r} (written by Sci-CoT stage 1)")
    inputs = render_inputs(ex, rationale=generated[ex.id].rationale)
    rows.append(_row(ex, inputs, prompts.render_target(method, ex)))
  return rows
