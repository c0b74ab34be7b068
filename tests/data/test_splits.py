"""The seeded StrategyQA hold-out split and the official file -> split mapping."""

import hashlib
import json
import random

import pytest

from kard_jax.data import benchmarks, splits
from kard_jax.data.errors import InputError


@pytest.fixture(scope="module")
def strategyqa(shared_data):
  return benchmarks.load_benchmark("strategyqa", shared_data / "strategyqa/strategyqa_train.json")


def test_holdout_is_the_documented_hash_rule(strategyqa):
  train, held = splits.holdout_split(strategyqa)
  assert (len(train), len(held)) == (2061, 229)
  # The rule in the module docstring, recomputed by hand: lowest SHA-256("0:<qid>") are held out.
  ranked = sorted(ex.id for ex in strategyqa)
  ranked.sort(key=lambda qid: hashlib.sha256(f"0:{qid}".encode()).hexdigest())
  assert {ex.id for ex in held} == set(ranked[:229])
  assert {ex.id for ex in train}.isdisjoint(ex.id for ex in held)
  # Each part keeps the file's order.
  order = {ex.id: i for i, ex in enumerate(strategyqa)}
  assert [order[ex.id] for ex in held] == sorted(order[ex.id] for ex in held)


def test_holdout_ignores_input_order_and_depends_on_seed(strategyqa):
  shuffled = list(strategyqa)
  random.Random(1).shuffle(shuffled)
  held = {ex.id for ex in splits.holdout_split(strategyqa)[1]}
  assert {ex.id for ex in splits.holdout_split(shuffled)[1]} == held
  other = {ex.id for ex in splits.holdout_split(strategyqa, seed=1)[1]}
  assert len(other) == 229 and other != held
  assert len(splits.holdout_split(strategyqa, fraction=0.25)[1]) == round(0.25 * 2290)
  with pytest.raises(ValueError):
    splits.holdout_split(strategyqa, fraction=1.0)


def test_load_splits_strategyqa_holds_out_disjoint_validation_and_test(shared_data, strategyqa):
  loaded = splits.load_splits("strategyqa", shared_data / "strategyqa")
  assert [len(loaded[s]) for s in splits.SPLITS] == [1832, 229, 229]
  # The documented rule by hand: SHA-256("0:<qid>") order, test first, then validation.
  ranked = sorted((ex.id for ex in strategyqa),
                  key=lambda qid: hashlib.sha256(f"0:{qid}".encode()).hexdigest())
  assert {ex.id for ex in loaded["test"]} == set(ranked[:229])
  assert {ex.id for ex in loaded["validation"]} == set(ranked[229:458])
  # The test slice is the single held-out slice of earlier versions.
  assert loaded["test"] == splits.holdout_split(strategyqa)[1]


def test_every_prepared_benchmark_has_pairwise_disjoint_splits(shared_data, tmp_path):
  from kard_jax.data.example import read_examples
  from kard_jax.data.synthetic import SyntheticConfig, write_benchmark

  prepared = {name: splits.load_splits(name, shared_data / folder)
              for name, folder in (("strategyqa", "strategyqa"), ("obqa", "obqa"),
                                   ("arc_easy", "arc"))}
  write_benchmark(SyntheticConfig(), tmp_path)
  prepared["synthetic"] = {s: read_examples(tmp_path / "examples" / f"{s}.jsonl")
                           for s in splits.SPLITS}
  for name, loaded in prepared.items():
    assert all(loaded[s] for s in splits.SPLITS), name
    for i, a in enumerate(splits.SPLITS):
      for b in splits.SPLITS[i + 1:]:
        assert not {ex.id for ex in loaded[a]} & {ex.id for ex in loaded[b]}, (name, a, b)
        assert not ({splits._question_key(ex) for ex in loaded[a]}
                    & {splits._question_key(ex) for ex in loaded[b]}), (name, a, b)
    assert splits.overlaps(loaded) == [], name


def test_a_question_repeated_across_official_files_stays_in_the_later_split(shared_data):
  # ARC-Easy's train file repeats two test questions under other ids.
  raw = {s: benchmarks.load_benchmark("arc_easy", shared_data / "arc" / f"ARC-Easy-{f}.jsonl")
         for s, f in (("train", "Train"), ("validation", "Dev"), ("test", "Test"))}
  assert len(splits.overlaps(raw)) == 1
  loaded = splits.load_splits("arc_easy", shared_data / "arc")
  assert len(loaded["train"]) == len(raw["train"]) - 2
  assert loaded["test"] == raw["test"] and loaded["validation"] == raw["validation"]


def test_load_splits_official_files(shared_data):
  obqa = splits.load_splits("obqa", shared_data / "obqa")
  assert [len(obqa[s]) for s in splits.SPLITS] == [4957, 500, 500]
  assert all("fact1" in ex.extra for ex in obqa["test"])  # test_complete preferred over test
  arc = splits.load_splits("arc_easy", shared_data / "arc")
  assert [len(arc[s]) for s in splits.SPLITS] == [2249, 570, 2376]


def test_load_splits_errors(tmp_path, shared_data):
  with pytest.raises(InputError, match="no arc_challenge train file"):
    splits.load_splits("arc_challenge", shared_data / "arc")
  for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):  # one id, three different questions
    row = {"id": "q1", "question": {"stem": f"Q {name}?", "choices": [
        {"text": "x", "label": "A"}, {"text": "y", "label": "B"}]}, "answerKey": "A"}
    (tmp_path / name).write_text(json.dumps(row) + "\n")
  with pytest.raises(InputError, match=r"dev\.jsonl: id 'q1' is in both the train and the "
                     "validation split"):
    splits.load_splits("obqa", tmp_path)
