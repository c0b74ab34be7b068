"""Checkpoint -> accuracy: decode a task's evaluation split, parse answers, vote, write the record.

Inputs come from the SeqIO task (`tasks/`), tokenised by the task's own vocabulary, in the split's
order; each row carries its id, gold label and choices. Every decode is detokenised and parsed with
`kard_jax.data.answers.parse_answer`; sampled answers are combined by `voting.majority_vote`
(greedy: the one answer; beam search: the best beam that names a choice).

Files written to `out_dir`:
  predictions.jsonl   one line per example:
      {"id", "inputs", "rationales": [text per decode], "answers": [label or null per decode],
       "scores": [sequence log-prob (beam: length-penalised score) per decode],
       "votes": {label: count}, "prediction": label or null, "gold": label, "correct": bool,
       "knowledge": the passages text of the input, or null when the method reads none}
  metrics.json        {"accuracy", "answer_parse_rate", "num_examples", "num_correct",
                       "num_decodes", "num_parsed", "num_unanswered", ...}: accuracy is the
                       fraction of examples whose voted label equals the gold one; the parse rate
                       is the fraction of all decodes that named a choice; "unanswered" examples
                       had no parsable decode at all (they count as wrong).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from typing import Any, Iterable, Sequence

import numpy as np

from kard_jax.data.answers import parse_answer
from kard_jax.data.example import Choice
from kard_jax.data.jsonl import atomic_open, write_jsonl
from kard_jax.decoding import adapters, voting
from kard_jax.decoding.predictor import Outputs, Predictor

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
_KNOWLEDGE = re.compile(r"\bKnowledge: (.*?) (?:Explanation|Answer):", re.S)


@dataclasses.dataclass(frozen=True)
class EvalRow:
  """One evaluation example as the task provides it."""
  id: str
  inputs: str
  tokens: np.ndarray
  gold: str
  choices: tuple[Choice, ...]


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_rows(task_name: str, split: str, max_input_length: int | None = None):
  """(rows, vocabulary) of a registered SeqIO task's split, in order, inputs tokenised with EOS."""
  import seqio

  task = seqio.get_mixture_or_task(task_name)
  if not isinstance(task, seqio.Task):
    raise ValueError(f"{task_name!r} is a mixture; evaluate one of its tasks")
  lengths = {"inputs": max_input_length, "targets": None}
  ds = task.get_dataset(lengths, split=split, shuffle=False, num_epochs=1, use_cached=False)
  rows = []
  for ex in ds.as_numpy_iterator():
    choices = tuple(Choice(str(l), str(t)) for l, t in json.loads(_text(ex["choices"])))
    rows.append(EvalRow(id=_text(ex["id"]), inputs=_text(ex["inputs_pretokenized"]),
                        tokens=np.asarray(ex["inputs"], np.int32), gold=_text(ex["answer"]),
                        choices=choices))
  return rows, task.output_features["targets"].vocabulary


def score_example(row: EvalRow, texts: Sequence[str], scores: Sequence[float],
                  vote: bool = True) -> dict[str, Any]:
  """The prediction record of one example (see the module docstring).

  With `vote` the prediction is the self-consistency vote; without (beam search, whose outputs
  come best first) it is the answer of the best decode that names a choice.
  """
  answers = [parse_answer(t, row.choices) for t in texts]
  result = voting.majority_vote(answers, [c.label for c in row.choices], scores)
  prediction = result.label if vote else next((a for a in answers if a is not None), None)
  knowledge = _KNOWLEDGE.search(row.inputs)
  return {"id": row.id, "inputs": row.inputs, "rationales": list(texts), "answers": answers,
          "scores": [round(float(s), 6) for s in scores], "votes": result.counts,
          "prediction": prediction, "gold": row.gold, "correct": prediction == row.gold,
          "knowledge": knowledge.group(1) if knowledge else None}


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
  """Counts and rates over prediction records (also what a recount from the file gives)."""
  records = list(records)
  n = len(records)
  decodes = sum(len(r["answers"]) for r in records)
  parsed = sum(a is not None for r in records for a in r["answers"])
  correct = sum(bool(r["correct"]) for r in records)
  return {"num_examples": n, "num_correct": correct, "accuracy": correct / n if n else 0.0,
          "num_decodes": decodes, "num_parsed": parsed,
          "answer_parse_rate": parsed / decodes if decodes else 0.0,
          "num_unanswered": sum(r["prediction"] is None for r in records)}


def default_out_dir(model_dir: str, task: str, split: str, step: int) -> str:
  return os.path.join(model_dir, "decodes", f"{task}.{split}.step{step}")


def evaluate(model_dir: str, task: str, config: adapters.DecodeConfig, *, split: str = "test",
             batch_size: int = 16, max_input_length: int | None = None,
             out_dir: str | None = None, seed: int = 0, mesh=None, rules=None,
             progress: bool = True) -> tuple[dict[str, Any], str]:
  """Decodes `task`'s `split` with `model_dir`'s newest checkpoint; returns (metrics, out_dir)."""
  from tqdm import tqdm

  rows, vocab = load_rows(task, split, max_input_length)
  if not rows:
    raise ValueError(f"task {task!r} has no {split!r} examples")
  predictor = Predictor(model_dir, config, batch_size=batch_size, mesh=mesh, rules=rules,
                        seed=seed)
  out_dir = out_dir or default_out_dir(model_dir, task, split, predictor.step)
  start = time.perf_counter()
  records: list[dict[str, Any]] = []
  bar = tqdm(total=len(rows), desc=f"decoding {task}/{split}", unit="ex", file=sys.stderr,
             disable=not progress)
  for block in predictor.iter_outputs([r.tokens for r in rows]):
    for outputs in block:
      row = rows[len(records)]
      records.append(score_example(row, _detokenize(vocab, outputs), outputs.scores.tolist(),
                                   vote=config.method != "beam"))
    bar.update(len(block))
    bar.set_postfix(acc=f"{summarize(records)['accuracy']:.3f}")
  bar.close()
  seconds = time.perf_counter() - start

  metrics = summarize(records)
  metrics.update({
      "task": task, "split": split, "model_dir": os.path.abspath(model_dir),
      "family": predictor.family, "checkpoint_step": predictor.step,
      "decoding": dataclasses.asdict(config), "seconds": round(seconds, 3)})
  write_jsonl(os.path.join(out_dir, PREDICTIONS), records)
  with atomic_open(os.path.join(out_dir, METRICS)) as f:
    json.dump(metrics, f, indent=2, sort_keys=True)
    f.write("\n")
  return metrics, out_dir


def _detokenize(vocab, outputs: Outputs) -> list[str]:
  return [vocab.decode(seq) for seq in outputs.sequences()]


def summary_line(metrics: dict[str, Any]) -> str:
  return (f"{metrics['task']}/{metrics['split']} step {metrics['checkpoint_step']}: accuracy "
          f"{100 * metrics['accuracy']:.2f}% ({metrics['num_correct']}/{metrics['num_examples']}),"
          f" answers parsed {100 * metrics['answer_parse_rate']:.1f}% of "
          f"{metrics['num_decodes']} decodes, {metrics['seconds']:.1f} s")
