"""Which official file is which split, and the seeded hold-out slices where a source has none.

StrategyQA's official test set is unlabelled, so its labelled file (2,290 questions) is split in
three: each qid is ranked by SHA-256 of "<seed>:<qid>" (seed 0); the first round(fraction * n)
(10% by default: 229) are the `test` split, the next round(fraction * n) the `validation` split,
the rest `train`. The split depends only on the qids, the seed and the fraction: not on file
order, Python's hash seed, NumPy or the platform. Validation and test are disjoint, so whatever
reads validation during training (T5X's train-eval, checkpoint or hyperparameter choice, the
reranker's development set) never sees a test question. The test slice is the same 229 questions
the single held-out slice of earlier versions held.

Any benchmark given without a test (or validation) file gets the same treatment for the missing
split(s), carved from its train file.
"""

from __future__ import annotations

import hashlib
import os
from typing import Mapping, Sequence

from kard_jax.data import benchmarks
from kard_jax.data.errors import InputError
from kard_jax.data.example import Example

SPLITS = ("train", "validation", "test")
HOLDOUT_SEED = 0
HOLDOUT_FRACTION = 0.1

# benchmark -> split -> file names in a source directory; the first that exists wins.
SOURCE_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "medqa": {
        "train": ("phrases_no_exclude_train.jsonl", "train.jsonl"),
        "validation": ("phrases_no_exclude_dev.jsonl", "dev.jsonl"),
        "test": ("phrases_no_exclude_test.jsonl", "test.jsonl"),
    },
    "strategyqa": {"train": ("strategyqa_train.json",)},
    "obqa": {
        "train": ("train_complete.jsonl", "train.jsonl"),
        "validation": ("dev_complete.jsonl", "dev.jsonl"),
        "test": ("test_complete.jsonl", "test.jsonl"),
    },
    "arc_easy": {s: (f"ARC-Easy-{f}.jsonl",) for s, f in zip(SPLITS, ("Train", "Dev", "Test"))},
    "arc_challenge": {
        s: (f"ARC-Challenge-{f}.jsonl",) for s, f in zip(SPLITS, ("Train", "Dev", "Test"))},
}


def _rank(examples: Sequence[Example], seed: int) -> list[Example]:
  return sorted(examples, key=lambda ex: hashlib.sha256(f"{seed}:{ex.id}".encode()).hexdigest())


def holdout_split(examples: Sequence[Example], fraction: float = HOLDOUT_FRACTION,
                  seed: int = HOLDOUT_SEED) -> tuple[list[Example], list[Example]]:
  """(kept, held_out), each in the input order; held_out has round(fraction * n) examples."""
  kept, (held,) = holdout_slices(examples, 1, fraction, seed)
  return kept, held


def holdout_slices(examples: Sequence[Example], count: int, fraction: float = HOLDOUT_FRACTION,
                   seed: int = HOLDOUT_SEED) -> tuple[list[Example], list[list[Example]]]:
  """(kept, [slice_1, ..., slice_count]): `count` disjoint slices of round(fraction * n)
  examples each, consecutive in SHA-256 order of "<seed>:<id>"; every part in the input order."""
  if not 0.0 < fraction * count < 1.0 or fraction <= 0.0:
    raise ValueError(f"fraction must be in (0, 1/{count}), got {fraction}")
  size = round(fraction * len(examples))
  ranked = _rank(examples, seed)
  slices = [{ex.id for ex in ranked[i * size:(i + 1) * size]} for i in range(count)]
  taken = set().union(*slices)
  return ([ex for ex in examples if ex.id not in taken],
          [[ex for ex in examples if ex.id in ids] for ids in slices])


def source_files(benchmark: str, source) -> dict[str, str]:
  """split -> file: `source` is a directory of official files or a {split: file} mapping."""
  if benchmark not in SOURCE_FILES:
    raise ValueError(f"unknown benchmark {benchmark!r}; choose from {sorted(SOURCE_FILES)}")
  if isinstance(source, Mapping):
    unknown = set(source) - set(SPLITS)
    if unknown:
      raise ValueError(f"unknown splits {sorted(unknown)}; choose from {SPLITS}")
    files = {s: os.fspath(f) for s, f in source.items()}
  else:
    directory = os.fspath(source)
    if not os.path.isdir(directory):
      raise InputError(directory, "not a directory of official benchmark files")
    files = {}
    for split, names in SOURCE_FILES[benchmark].items():
      found = [n for n in names if os.path.exists(os.path.join(directory, n))]
      if not found:
        raise InputError(directory, f"no {benchmark} {split} file (looked for {', '.join(names)})")
      files[split] = os.path.join(directory, found[0])
  if "train" not in files:
    raise ValueError(f"{benchmark}: a train file is required")
  return files


def load_splits(benchmark: str, source, *, fraction: float = HOLDOUT_FRACTION,
                seed: int = HOLDOUT_SEED) -> dict[str, list[Example]]:
  """Loads a benchmark's official files into {train, validation, test} examples.

  A split without a file (StrategyQA's test and validation) is a seeded hold-out slice of the
  train file (see the module docstring): test first, then validation. A question (text and
  choices) found in two splits stays in the later one only (test, then validation, then train);
  ids must be unique across the splits.
  """
  files = source_files(benchmark, source)
  splits = {s: benchmarks.load_benchmark(benchmark, f) for s, f in files.items()}
  missing = [s for s in ("test", "validation") if s not in splits]
  if missing:
    splits["train"], held = holdout_slices(splits["train"], len(missing), fraction, seed)
    for split, examples in zip(missing, held):
      splits[split], files[split] = examples, files["train"]
  # Official files may repeat a question under another id (ARC-Easy: 2 train questions are also
  # test questions): the later split keeps it, training never sees an evaluation question.
  for early, late in (("train", "validation"), ("train", "test"), ("validation", "test")):
    seen = {_question_key(ex) for ex in splits[late]}
    splits[early] = [ex for ex in splits[early] if _question_key(ex) not in seen]
  owner: dict[str, str] = {}
  for split in SPLITS:
    for ex in splits[split]:
      if ex.id in owner:
        raise InputError(files[split], f"id {ex.id!r} is in both the {owner[ex.id]} and the "
                         f"{split} split")
      owner[ex.id] = split
  return {s: splits[s] for s in SPLITS}


def overlaps(splits: Mapping[str, Sequence[Example]]) -> list[str]:
  """What two splits share, by id or by (normalised) question text: one line per overlap."""
  out = []
  names = list(splits)
  keys = {s: ({ex.id for ex in splits[s]}, {_question_key(ex) for ex in splits[s]})
          for s in names}
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      ids = keys[a][0] & keys[b][0]
      texts = keys[a][1] & keys[b][1]
      if ids:
        out.append(f"{a}/{b}: {len(ids)} shared ids, e.g. {sorted(ids)[0]!r}")
      if texts:
        out.append(f"{a}/{b}: {len(texts)} shared questions, e.g. {sorted(texts)[0]!r}")
  return out


def _question_key(ex: Example) -> str:
  """The question with its choices, case and spacing folded (OpenBookQA reuses a stem such as
  "decomposition" with other choices: a different question)."""
  text = ex.question + " || " + " | ".join(c.text for c in ex.choices)
  return " ".join(text.lower().split())
