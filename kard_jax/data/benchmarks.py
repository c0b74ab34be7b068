"""Loaders from each benchmark's official file format into the normalised `Example`.

  medqa       MedQA-USMLE jsonl: {"question", "answer", "options": {"A": ..}, "answer_idx",
              "meta_info"}. The source has no ids: an example's id is "medqa-<split>-<line>",
              <split> taken from the file name (train/dev/test) so ids stay unique across a
              benchmark's files.
  strategyqa  StrategyQA JSON list: {"qid", "question", "answer": bool, "facts", "decomposition",
              "evidence", ...}. Yes/no becomes two choices, A "yes" and B "no"; True -> "A".
  obqa, arc   OpenBookQA / ARC jsonl: {"id", "question": {"stem", "choices": [{"text", "label"}]},
              "answerKey"}. Labels are renumbered by position to A, B, C, ... (ARC sometimes uses
              "1".."4"); when that changes anything the source labels are kept in
              extra["original_labels"] and extra["original_answer"]. A null id (OBQA dev) becomes
              "obqa-<split>-<line>".

Everything else a source line carries (facts, decomposition, evidence, fact1, meta_info, ...) goes
into `Example.extra` under its own key. Every problem raises `InputError(path, message, line)`; line
numbers are the real 1-based lines of the file, also for StrategyQA's JSON list (the line where the
item starts).
"""

from __future__ import annotations

import json
import os
import re
import string
from typing import Any, Callable, Iterator, Mapping

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError
from kard_jax.data.example import Choice, Example, validate

YES_NO = (Choice("A", "yes"), Choice("B", "no"))
LETTERS = string.ascii_uppercase


def iter_json_array(path) -> Iterator[tuple[int, Any]]:
  """Yields (line, item) for each item of a file holding one JSON list.

  Decodes item by item so an error (or an item the caller rejects) is reported at the line where
  it is, not at "line 1" of a 2 MB document.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise InputError(path, "file not found")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  decoder = json.JSONDecoder()
  ws = re.compile(r"\s*")
  line, last = 1, 0

  def line_at(pos: int) -> int:
    nonlocal line, last
    line += text.count("\n", last, pos)
    last = pos
    return line

  pos = ws.match(text, 0).end()
  if pos >= len(text) or text[pos] != "[":
    raise InputError(path, "invalid JSON (expected a JSON list '[...]')", line_at(pos))
  pos = ws.match(text, pos + 1).end()
  if text.startswith("]", pos):
    return
  while True:
    try:
      item, end = decoder.raw_decode(text, pos)
    except json.JSONDecodeError as e:
      raise InputError(path, f"invalid JSON ({e.msg} at column {e.colno})", e.lineno) from None
    yield line_at(pos), item
    pos = ws.match(text, end).end()
    if text.startswith("]", pos):
      break
    if not text.startswith(",", pos):
      raise InputError(path, "invalid JSON (expected ',' or ']' after a list item)", line_at(pos))
    pos = ws.match(text, pos + 1).end()
  rest = ws.match(text, pos + 1).end()
  if rest != len(text):
    raise InputError(path, "invalid JSON (extra data after the list)", line_at(rest))


def _field(obj: Any, key: str, path, line: int, where: str = "") -> Any:
  """obj[key], or an InputError naming the field ('question.stem') when it is missing."""
  if not isinstance(obj, Mapping):
    raise InputError(path, f"{where or 'item'} must be a JSON object, got {type(obj).__name__}",
                     line)
  if obj.get(key) is None:
    raise InputError(path, f"missing field {(where + '.' if where else '') + key!r}", line)
  return obj[key]


def _text(value: Any, path, line: int, what: str) -> str:
  if not isinstance(value, str):
    raise InputError(path, f"{what} must be a string, got {type(value).__name__}", line)
  if not value.strip():
    raise InputError(path, f"empty {what}", line)
  return value


def split_name(path) -> str:
  """The split a source file holds, from its name: 'phrases_no_exclude_dev.jsonl' -> 'dev'."""
  stem = os.path.basename(os.fspath(path)).split(".")[0]
  for token in reversed(re.split(r"[_\-]", stem.lower())):
    if token in ("train", "dev", "validation", "test"):
      return token
  return stem


class _Ids:
  """Rejects duplicate ids, naming the line of the first occurrence."""

  def __init__(self, path):
    self.path, self.seen = path, {}

  def add(self, example_id: str, line: int) -> str:
    if example_id in self.seen:
      raise InputError(self.path, f"duplicate id {example_id!r} (first on line "
                       f"{self.seen[example_id]})", line)
    self.seen[example_id] = line
    return example_id


def _extra(obj: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
  return {k: v for k, v in obj.items() if k not in known}


def load_medqa(path) -> list[Example]:
  """MedQA-USMLE (any number of options: the 4-option files or the 5-option ones)."""
  prefix = f"medqa-{split_name(path)}"
  ids, out = _Ids(path), []
  for line, obj in jsonl.iter_jsonl(path):
    question = _text(_field(obj, "question", path, line), path, line, "question")
    options = _field(obj, "options", path, line)
    if not isinstance(options, Mapping) or len(options) < 2:
      raise InputError(path, "'options' must be an object with at least 2 options", line)
    choices = []
    for label, text in options.items():
      if not isinstance(text, str) or not text.strip():
        raise InputError(path, f"empty choice {label!r}", line)
      choices.append(Choice(str(label), text))
    answer = str(_field(obj, "answer_idx", path, line))
    labels = [c.label for c in choices]
    if answer not in labels:
      raise InputError(path, f"unknown answer label {answer!r} (options are {labels})", line)
    answer_text = obj.get("answer")
    if answer_text is not None and str(answer_text).strip() != options[answer].strip():
      raise InputError(path, f"'answer' {answer_text!r} is not option {answer} "
                       f"({options[answer]!r})", line)
    ex = Example(ids.add(f"{prefix}-{line}", line), question, tuple(choices), answer,
                 _extra(obj, ("question", "options", "answer_idx", "answer")))
    out.append(validate(ex, path, line))
  return out


def strategyqa_example(obj: Mapping[str, Any], path, line: int) -> Example:
  qid = _field(obj, "qid", path, line)
  question = _text(_field(obj, "question", path, line), path, line, "question")
  if "answer" not in obj:
    raise InputError(path, "missing field 'answer' (the official StrategyQA test set has no "
                     "labels; split strategyqa_train.json for evaluation instead)", line)
  answer = obj["answer"]
  if not isinstance(answer, bool):
    raise InputError(path, f"unknown answer {answer!r} (StrategyQA answers are true/false)", line)
  ex = Example(str(qid), question, YES_NO, "A" if answer else "B",
               _extra(obj, ("qid", "question", "answer")))
  return validate(ex, path, line)


def load_strategyqa(path) -> list[Example]:
  ids, out = _Ids(path), []
  for line, obj in iter_json_array(path):
    ex = strategyqa_example(obj, path, line)
    ids.add(ex.id, line)
    out.append(ex)
  return out


def obqa_example(obj: Mapping[str, Any], path, line: int, id_prefix: str) -> Example:
  """One OBQA/ARC line; choices renumbered by position to A, B, C, ..."""
  q = _field(obj, "question", path, line)
  stem = _text(_field(q, "stem", path, line, "question"), path, line, "question stem")
  raw = _field(q, "choices", path, line, "question")
  if not isinstance(raw, list) or len(raw) < 2:
    raise InputError(path, "'question.choices' must be a list of at least 2 choices", line)
  if len(raw) > len(LETTERS):
    raise InputError(path, f"too many choices ({len(raw)})", line)
  original, choices = [], []
  for i, c in enumerate(raw):
    label = str(_field(c, "label", path, line, f"question.choices[{i}]")).strip()
    text = c.get("text")
    if not isinstance(text, str) or not text.strip():
      raise InputError(path, f"empty choice {label!r}", line)
    if label in original:
      raise InputError(path, f"duplicate choice label {label!r}", line)
    original.append(label)
    choices.append(Choice(LETTERS[i], text))
  key = str(_field(obj, "answerKey", path, line)).strip()
  if key not in original:
    raise InputError(path, f"unknown answer label {key!r} (choices are {original})", line)
  answer = LETTERS[original.index(key)]
  raw_id = obj.get("id")
  example_id = f"{id_prefix}-{line}" if raw_id is None or raw_id == "" else str(raw_id)
  extra = _extra(obj, ("id", "question", "answerKey"))
  extra.update({f"question_{k}": v for k, v in q.items() if k not in ("stem", "choices")})
  if original != [c.label for c in choices]:
    extra["original_labels"], extra["original_answer"] = original, key
  return validate(Example(example_id, stem, tuple(choices), answer, extra), path, line)


def _load_obqa_like(benchmark: str) -> Callable[[Any], list[Example]]:
  def load(path) -> list[Example]:
    prefix = f"{benchmark}-{split_name(path)}"
    ids, out = _Ids(path), []
    for line, obj in jsonl.iter_jsonl(path):
      ex = obqa_example(obj, path, line, prefix)
      ids.add(ex.id, line)
      out.append(ex)
    return out

  load.__name__ = f"load_{benchmark}"
  load.__doc__ = (f"{benchmark} in the OpenBookQA schema (a null id becomes "
                  f"{benchmark}-SPLIT-LINE).")
  return load


load_obqa = _load_obqa_like("obqa")
load_arc = _load_obqa_like("arc")

LOADERS: dict[str, Callable[[Any], list[Example]]] = {
    "medqa": load_medqa,
    "strategyqa": load_strategyqa,
    "obqa": load_obqa,
    "arc": load_arc,
    "arc_easy": load_arc,
    "arc_challenge": load_arc,
}


def load_benchmark(name: str, path) -> list[Example]:
  """Loads one official file of benchmark `name` (a key of LOADERS) into examples."""
  if name not in LOADERS:
    raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(LOADERS)}")
  return LOADERS[name](path)
