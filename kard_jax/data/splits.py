"""Which official file is which split, and the seeded hold-out split where a source has no test.

StrategyQA's official test set is unlabelled, so its labelled file (2,290 questions) is split:
each qid is ranked by SHA-256 of "<seed>:<qid>" and the first round(fraction * n) (10% by
default, seed 0) are held out. The split depends only on the qids, the seed and the fraction: not
on file order, Python's hash seed, NumPy or the platform. The held-out part is both the
`validation` and the `test` split (T5X's train-eval reads the first, eval/infer the second).
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


def holdout_split(examples: Sequence[Example], fraction: float = HOLDOUT_FRACTION,
                  seed: int = HOLDOUT_SEED) -> tuple[list[Example], list[Example]]:
  """(kept, held_out), each in the input order; held_out has round(fraction * n) examples."""
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"fraction must be in (0, 1), got {fraction}")
  rank = sorted(examples, key=lambda ex: hashlib.sha256(f"{seed}:{ex.id}".encode()).hexdigest())
  held = {ex.id for ex in rank[:round(fraction * len(examples))]}
  return ([ex for ex in examples if ex.id not in held], [ex for ex in examples if ex.id in held])


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

  StrategyQA (or any benchmark given without a validation file) gets the seeded hold-out split of
  its train file; a missing test split reuses validation. Ids must be unique across the splits.
  """
  files = source_files(benchmark, source)
  splits = {s: benchmarks.load_benchmark(benchmark, f) for s, f in files.items()}
  if "validation" not in splits:
    splits["train"], splits["validation"] = holdout_split(splits["train"], fraction, seed)
    files["validation"] = files["train"]
  if "test" not in splits:
    splits["test"], files["test"] = splits["validation"], files["validation"]
  owner: dict[str, str] = {}
  for split in SPLITS:
    if split == "test" and splits["test"] is splits["validation"]:
      continue
    for ex in splits[split]:
      if ex.id in owner:
        raise InputError(files[split], f"id {ex.id!r} is in both the {owner[ex.id]} and the "
                         f"{split} split")
      owner[ex.id] = split
  return {s: splits[s] for s in SPLITS}
