"""Accuracy recounted from a predictions file: parse every decoded text, vote, compare to gold.

The pipeline never copies an evaluator's summary into the results table: each row is recounted
from the predictions file against the examples (and broken down by an example field, e.g. the
synthetic benchmark's seen/unseen entities), so the table is checkable line by line.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from kard_jax.data import jsonl
from kard_jax.data.answers import parse_answer
from kard_jax.data.errors import InputError
from kard_jax.data.example import Example
from kard_jax.decoding.voting import majority_vote

_TEXT_KEYS = ("rationales", "outputs", "samples", "texts")
_ONE_TEXT_KEYS = ("prediction", "output", "text", "rationale")
_LOGPROB_KEYS = ("log_probs", "scores", "logprobs")


def decoded_texts(obj: Mapping[str, Any]) -> list[str]:
  """The decoded output(s) of one predictions line (a list for sampled decoding)."""
  for key in _TEXT_KEYS:
    value = obj.get(key)
    if isinstance(value, list) and value:
      return [v if isinstance(v, str) else str(v.get("text", "")) for v in value]
  for key in _ONE_TEXT_KEYS:
    if isinstance(obj.get(key), str):
      return [obj[key]]
  raise KeyError(f"no decoded text among {sorted(obj)}")


def _log_probs(obj: Mapping[str, Any], n: int) -> list[float] | None:
  for key in _LOGPROB_KEYS:
    value = obj.get(key)
    if isinstance(value, list) and len(value) == n and all(
        isinstance(v, (int, float)) for v in value):
      return [float(v) for v in value]
  return None


def recount(predictions_path: str, examples: Sequence[Example],
            group_field: str | None = None) -> dict[str, Any]:
  """{"accuracy": {"all": %, group: %}, "counts": {...}, "parse_rate": %} over `examples`.

  Every example must have exactly one predictions line; each line's outputs are parsed against
  the example's choices and majority-voted (ties: summed log-prob, then choice order).
  """
  by_id = {ex.id: ex for ex in examples}
  predicted: dict[str, str | None] = {}
  parsed = total = 0
  for line, obj in jsonl.iter_jsonl(predictions_path):
    example_id = str(obj.get("id"))
    if example_id not in by_id:
      raise InputError(predictions_path, f"prediction for unknown example {example_id!r}", line)
    if example_id in predicted:
      raise InputError(predictions_path, f"second prediction for {example_id!r}", line)
    try:
      texts = decoded_texts(obj)
    except KeyError as e:
      raise InputError(predictions_path, str(e), line) from None
    ex = by_id[example_id]
    labels = [parse_answer(t, ex.choices) for t in texts]
    parsed += sum(l is not None for l in labels)
    total += len(labels)
    predicted[example_id] = majority_vote(labels, ex.labels, _log_probs(obj, len(texts))).label
  missing = [ex.id for ex in examples if ex.id not in predicted]
  if missing:
    raise InputError(predictions_path, f"no prediction for {len(missing)} examples (e.g. "
                     f"{missing[0]!r})")
  return summarize(((ex, predicted[ex.id]) for ex in examples), group_field,
                   parse_rate=100.0 * parsed / max(total, 1))


def last_choice_mentioned(text: str, example: Example) -> str | None:
  """The label of the choice whose text the rationale (its answer statement removed) mentions
  last, or None: which answer the reasoning itself arrived at, whatever letter it then gave."""
  from kard_jax.data.prompts import strip_answer  # pylint: disable=import-outside-toplevel

  body = strip_answer(text).lower()
  best, where = None, -1
  for c in example.choices:
    i = body.rfind(c.text.lower())
    if i > where:
      best, where = c.label, i
  return best


def reasoning_recount(predictions_path: str, examples: Sequence[Example],
                      group_field: str | None = None) -> dict[str, Any]:
  """Like `recount`, but scores the answer each first decode's reasoning reaches (the choice it
  mentions last) instead of the letter it states: separates knowing from answer formatting."""
  by_id = {ex.id: ex for ex in examples}
  reached = {}
  for _, obj in jsonl.iter_jsonl(predictions_path):
    ex = by_id.get(str(obj.get("id")))
    if ex is not None:
      reached[ex.id] = last_choice_mentioned(decoded_texts(obj)[0], ex)
  return summarize(((ex, reached.get(ex.id)) for ex in examples), group_field)


def summarize(pairs: Iterable[tuple[Example, str | None]], group_field: str | None,
              parse_rate: float | None = None) -> dict[str, Any]:
  correct: dict[str, int] = {}
  counts: dict[str, int] = {}
  for ex, label in pairs:
    keys = ["all"]
    if group_field and group_field in ex.extra:
      keys.append(str(ex.extra[group_field]))
    for k in keys:
      counts[k] = counts.get(k, 0) + 1
      correct[k] = correct.get(k, 0) + int(label == ex.answer)
  accuracy = {k: 100.0 * correct[k] / counts[k] for k in counts}
  out: dict[str, Any] = {"accuracy": accuracy, "counts": counts, "correct": correct}
  if parse_rate is not None:
    out["parse_rate"] = parse_rate
  return out
