"""Accuracy from the parsed answer, as a SeqIO postprocessor plus metric function.

SeqIO calls `postprocess(text, example=ex, is_target=...)` with the task example, which carries
the gold label (`answer`) and the choices (`choices`, JSON); so the target becomes the gold label
and a prediction becomes the label `parse_answer` reads from it (None when it names no choice,
which counts as wrong). A list of predictions (several decodes of one input) becomes their
majority label: self-consistency voting, ties going to the label reached first.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Mapping, Sequence

from kard_jax.data.answers import parse_answer
from kard_jax.data.example import Choice


def _text(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if hasattr(value, "item"):  # numpy scalar
    return _text(value.item())
  return str(value)


def choices_of(example: Mapping[str, Any]) -> list[Choice]:
  return [Choice(str(label), str(text)) for label, text in json.loads(_text(example["choices"]))]


def vote(labels: Sequence[str | None]) -> str | None:
  """The most frequent non-None label; ties go to the one reached first."""
  counts = collections.Counter(l for l in labels if l is not None)
  if not counts:
    return None
  best = max(counts.values())
  return next(l for l in labels if l is not None and counts[l] == best)


def postprocess(output: Any, example: Mapping[str, Any] | None = None,
                is_target: bool = False) -> Any:
  """Gold label for targets; parsed (and voted) label for predictions."""
  if example is None:
    return output
  if is_target:
    return _text(example["answer"])
  choices = choices_of(example)
  if isinstance(output, (list, tuple)):
    return vote([parse_answer(_text(o), choices) for o in output])
  return parse_answer(_text(output), choices)


def accuracy(targets: Sequence[str], predictions: Sequence[str | None]) -> dict[str, float]:
  """Percentage of predictions equal to the gold label (seqio reports metrics in percent)."""
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
  if not targets:
    return {"accuracy": 0.0}
  correct = sum(t == p for t, p in zip(targets, predictions))
  return {"accuracy": 100.0 * correct / len(targets)}
