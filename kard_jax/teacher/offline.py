"""Rationales that need no endpoint: the synthetic benchmark's oracle, and files made elsewhere.

The synthetic benchmark's generator knows every fact, so its teacher ("synthetic-oracle") needs no
LLM: `synthetic_oracle` re-runs the generator from the benchmark's manifest, checks that it still
produces the examples on disk (a changed generator or config must not pair examples with another
world's rationales), and returns its rationales.

`import_file` maps any JSON-lines rationale file into our `Rationale` format, with the field names
given (dotted paths reach into nested objects: "output.text"). Either way the rationales then go
through the same answer filter and cap as the endpoint teacher's, so later stages never care where
they came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

from kard_jax.data import jsonl, synthetic
from kard_jax.data.answers import answer_statement, parse_answer
from kard_jax.data.errors import InputError
from kard_jax.data.example import Example, read_examples
from kard_jax.data.rationale import Rationale


def synthetic_oracle(data_dir, split: str = "train") -> tuple[list[Example], list[Rationale]]:
  """The examples of `split` in `data_dir` and the generator's rationales for them."""
  data_dir = os.fspath(data_dir)
  path = os.path.join(data_dir, "manifest.json")
  if not os.path.exists(path):
    raise InputError(path, "file not found (the offline teacher needs a synthetic benchmark "
                     "written by `kard data synthetic`)")
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
    config = dict(manifest["config"])
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise InputError(path, f"malformed manifest ({e})") from None
  if manifest.get("benchmark") != "synthetic":
    raise InputError(path, f"not a synthetic benchmark ({manifest.get('benchmark')!r}); the "
                     "offline teacher only knows the synthetic world")
  if manifest.get("version") != synthetic.VERSION:
    raise InputError(path, f"written by generator version {manifest.get('version')}, this is "
                     f"version {synthetic.VERSION}; regenerate the benchmark")
  config["hops"] = tuple(config.get("hops", ()))
  try:
    bench = synthetic.generate(synthetic.SyntheticConfig(**config))
  except (TypeError, ValueError) as e:
    raise InputError(path, f"bad generator config ({e})") from None
  examples_path = os.path.join(data_dir, "examples", f"{split}.jsonl")
  on_disk = read_examples(examples_path)
  generated = bench.splits.get(split, [])

  def canonical(examples: Sequence[Example]) -> list[str]:
    return [json.dumps(ex.to_json(), sort_keys=True) for ex in examples]

  if canonical(on_disk) != canonical(generated):
    raise InputError(examples_path, "these examples are not what the generator makes from "
                     "manifest.json's config; regenerate the benchmark")
  ids = {ex.id for ex in on_disk}
  return on_disk, [r for r in bench.rationales if r.id in ids]


@dataclasses.dataclass(frozen=True)
class Fields:
  """Where each value sits in a source line (dotted paths for nested objects)."""
  id: str = "id"
  rationale: str = "rationale"
  answer: str | None = None  # a label, a choice's text, yes/no or true/false; None: parse it
  sample: str | None = None  # None: number each example's rationales in file order
  teacher: str | None = None


def _get(obj: Mapping[str, Any], dotted: str) -> Any:
  value: Any = obj
  for part in dotted.split("."):
    if not isinstance(value, Mapping) or part not in value:
      return None
    value = value[part]
  return value


def _label(value: Any, example: Example) -> str | None:
  if isinstance(value, bool):
    value = "yes" if value else "no"
  if value is None:
    return None
  value = str(value).strip()
  if value in example.labels:
    return value
  return parse_answer(value, example.choices)


def import_file(path, examples: Sequence[Example], fields: Fields = Fields(), *,
                teacher: str = "", append_answer: bool = True, skip_unknown: bool = True,
                sampling: Mapping[str, Any] | None = None
                ) -> tuple[list[Rationale], dict[str, int]]:
  """Reads a foreign rationale file into Rationales for `examples`; returns them and counts.

  The answer is read from the rationale; when it states none, from the answer field, and then an
  answer statement is appended (with `append_answer`) so every rationale ends the way students
  are trained to end. Lines for ids not in `examples` (another split) are skipped and counted,
  or rejected when `skip_unknown` is False.
  """
  by_id = {ex.id: ex for ex in examples}
  counts = {"lines": 0, "unknown_id": 0, "answer_appended": 0}
  seen: dict[tuple[str, int], int] = {}
  next_sample: dict[str, int] = {}
  out: list[Rationale] = []
  for line, obj in jsonl.iter_jsonl(path):
    counts["lines"] += 1
    example_id = _get(obj, fields.id)
    if example_id is None:
      raise InputError(path, f"missing field {fields.id!r}", line)
    example = by_id.get(str(example_id))
    if example is None:
      if not skip_unknown:
        raise InputError(path, f"id {example_id!r} matches no example", line)
      counts["unknown_id"] += 1
      continue
    text = _get(obj, fields.rationale)
    if not isinstance(text, str) or not text.strip():
      raise InputError(path, f"missing or empty field {fields.rationale!r}", line)
    text = text.strip()
    answer = parse_answer(text, example.choices)
    if answer is None and fields.answer is not None:
      answer = _label(_get(obj, fields.answer), example)
      if answer is not None and append_answer:
        choice = next(c for c in example.choices if c.label == answer)
        text = f"{text}\n\n{answer_statement(choice)}"
        counts["answer_appended"] += 1
    if fields.sample is not None:
      raw = _get(obj, fields.sample)
      try:
        sample = int(raw)
      except (TypeError, ValueError):
        raise InputError(path, f"field {fields.sample!r} is not an integer: {raw!r}",
                         line) from None
    else:
      sample = next_sample.get(example.id, 0)
    next_sample[example.id] = max(next_sample.get(example.id, 0), sample + 1)
    key = (example.id, sample)
    if key in seen:
      raise InputError(path, f"duplicate sample {sample} for id {example.id!r} (first on line "
                       f"{seen[key]})", line)
    seen[key] = line
    name = _get(obj, fields.teacher) if fields.teacher else None
    out.append(Rationale(example.id, sample, text, answer, str(name or teacher),
                         dict(sampling or {})))
  return out, counts
