"""The synthetic benchmark: determinism, entity splits, answerability, distractors, rationales."""

import argparse
import collections
import dataclasses
import json
import os
import re

import bm25s
import pytest
import Stemmer

from kard_jax.data import jsonl
from kard_jax.data.answers import parse_answer
from kard_jax.data.example import read_examples
from kard_jax.data.rationale import read_rationales
from kard_jax.data.synthetic import SyntheticConfig, generate, write_benchmark
from kard_jax.cli.commands import data_synthetic

TINY = SyntheticConfig(num_entities=80, num_validation=24, num_test=40, seed=3)


@pytest.fixture(scope="module")
def bench():
  return generate(TINY)


def _files(root):
  out = {}
  for dirpath, _, names in os.walk(root):
    for n in names:
      path = os.path.join(dirpath, n)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


def test_same_seed_same_files_and_other_seed_differs(tmp_path):
  write_benchmark(TINY, tmp_path / "a")
  write_benchmark(TINY, tmp_path / "b")
  write_benchmark(dataclasses.replace(TINY, seed=4), tmp_path / "c")
  a, b, c = (_files(tmp_path / x) for x in "abc")
  assert sorted(a) == ["examples/test.jsonl", "examples/train.jsonl", "examples/validation.jsonl",
                       "kb/passages.jsonl", "manifest.json", "rationales/train.jsonl"]
  assert a == b
  for name in a:
    if name != "manifest.json":
      assert a[name] != c[name], name


def test_written_files_read_back_with_the_standard_readers(tmp_path, bench):
  manifest = write_benchmark(TINY, tmp_path)
  for split, examples in bench.splits.items():
    assert read_examples(tmp_path / "examples" / f"{split}.jsonl") == examples
    assert manifest["counts"][split] == len(examples)
  assert read_rationales(tmp_path / "rationales" / "train.jsonl") == bench.rationales
  passages = jsonl.read_jsonl(tmp_path / "kb" / "passages.jsonl")
  assert passages == bench.passages
  assert all(set(p) == {"id", "title", "text"} for p in passages)
  assert len({p["id"] for p in passages}) == len(passages)
  on_disk = json.loads((tmp_path / "manifest.json").read_text())
  assert on_disk == manifest and on_disk["config"]["seed"] == TINY.seed


def test_split_sizes_and_seen_unseen_shares(bench):
  assert len(bench.splits["validation"]) == TINY.num_validation
  assert len(bench.splits["test"]) == TINY.num_test
  for split, n in (("validation", TINY.num_validation), ("test", TINY.num_test)):
    seen = sum(ex.extra["entity_split"] == "seen" for ex in bench.splits[split])
    assert seen == round(TINY.seen_share * n)
  assert {ex.extra["entity_split"] for ex in bench.splits["train"]} == {"seen"}
  assert {ex.extra["hops"] for split in bench.splits.values() for ex in split} == set(TINY.hops)


def _mentions(name, text):
  return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


def test_unseen_subjects_never_appear_in_training_questions_or_rationales(bench):
  train_text = [ex.question + " " + " ".join(c.text for c in ex.choices)
                for ex in bench.splits["train"]] + [r.rationale for r in bench.rationales]
  train_subjects = {ex.extra["subject"] for ex in bench.splits["train"]}
  train_pairs = {(ex.extra["subject"], ex.extra["relation"]) for ex in bench.splits["train"]}
  for split in ("validation", "test"):
    for ex in bench.splits[split]:
      subject = ex.extra["subject"]
      assert _mentions(subject, ex.question)
      if ex.extra["entity_split"] == "unseen":
        assert subject not in train_subjects
        assert not any(_mentions(subject, t) for t in train_text), subject
      else:
        assert subject in train_subjects
        assert (subject, ex.extra["relation"]) not in train_pairs
  unseen = {s: {ex.extra["subject"] for ex in bench.splits[s]
                if ex.extra["entity_split"] == "unseen"} for s in ("validation", "test")}
  assert not unseen["validation"] & unseen["test"]


def test_every_question_is_answerable_from_its_gold_passages(bench):
  kb = {p["id"]: p for p in bench.passages}
  for split in bench.splits.values():
    for ex in split:
      chain, gold = ex.extra["chain"], ex.extra["gold_passages"]
      assert len(gold) == ex.extra["hops"] == len(chain) - 1
      assert ex.answer_text == chain[-1]
      for hop, pid in enumerate(gold):
        passage = kb[pid]
        assert passage["title"] == chain[hop]
        assert _mentions(chain[hop + 1], passage["text"]), (passage, chain)


def test_distractors_share_the_answer_type_and_labels_are_balanced(bench):
  w = bench.world
  types = {"city": set(w.cities), "country": set(w.countries), "continent": set(w.continents),
           "language": set(w.languages)}
  for split in bench.splits.values():
    for ex in split:
      kind = ex.extra["relation"].split("_")[1]
      texts = [c.text for c in ex.choices]
      assert len(texts) == TINY.num_choices == len(set(texts))
      assert set(texts) <= types[kind], (ex.question, texts)
    counts = collections.Counter(ex.answer for ex in split)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_rationales_state_the_chain_in_order_and_end_with_the_gold_label(bench):
  by_id = {ex.id: ex for ex in bench.splits["train"]}
  per_example = collections.Counter(r.id for r in bench.rationales)
  assert set(per_example) == set(by_id)
  assert set(per_example.values()) == {TINY.rationales_per_question}
  for r in bench.rationales:
    ex = by_id[r.id]
    assert r.rationale.endswith(f"So, the answer is {ex.answer}.")
    assert r.answer == ex.answer and r.teacher == "synthetic-oracle"
    assert parse_answer(r.rationale, ex.choices) == ex.answer
    positions = [r.rationale.index(name) for name in ex.extra["chain"]]
    assert positions == sorted(positions)
  for ex_id in by_id:
    texts = [r.rationale for r in bench.rationales if r.id == ex_id]
    assert len(set(texts)) == len(texts)


def _question_bm25_recall(config, ks):
  """Share of test questions whose subject passage BM25 (question as query) ranks in the top k."""
  bench = generate(config)
  stemmer = Stemmer.Stemmer("english")
  corpus = bm25s.tokenize([p["text"] for p in bench.passages], stopwords="en", stemmer=stemmer,
                          show_progress=False)
  index = bm25s.BM25()
  index.index(corpus, show_progress=False)
  examples = bench.splits["test"]
  queries = bm25s.tokenize([ex.question for ex in examples], stopwords="en", stemmer=stemmer,
                           show_progress=False)
  hits, _ = index.retrieve(queries, k=max(ks), show_progress=False)
  return [sum(ex.extra["gold_passages"][0] in {bench.passages[j]["id"] for j in hits[i, :k]}
              for i, ex in enumerate(examples)) / len(examples) for k in ks]


def test_name_sharing_makes_question_only_bm25_ambiguous_but_not_hopeless():
  base = dataclasses.replace(TINY, num_entities=160, num_test=80)
  easy_top1, easy_top20 = _question_bm25_recall(
      dataclasses.replace(base, distractor_difficulty=0.0), (1, 20))
  hard_top1, hard_top20 = _question_bm25_recall(
      dataclasses.replace(base, distractor_difficulty=1.0), (1, 20))
  assert easy_top1 >= 0.6 and easy_top20 >= 0.95
  assert hard_top1 <= easy_top1 - 0.25  # the subject's namesakes outrank it...
  assert hard_top20 >= 0.9  # ...but it stays among the candidates a reranker sees


def test_hop_and_size_knobs():
  one_hop = generate(dataclasses.replace(TINY, hops=(1,), num_continents=2))
  assert {ex.extra["hops"] for s in one_hop.splits.values() for ex in s} == {1}
  big = generate(dataclasses.replace(TINY, num_entities=160))
  assert len(big.splits["train"]) > len(generate(TINY).splits["train"])
  assert len(big.passages) - len(generate(TINY).passages) == 80


def test_seen_questions_asked_repeats_training_questions_and_new_does_not(bench):
  def key(ex):
    return (ex.extra["subject"], ex.extra["relation"])
  asked = generate(dataclasses.replace(TINY, seen_questions="asked"))
  for b, repeats in ((asked, True), (bench, False)):
    trained = {key(ex) for ex in b.splits["train"]}
    seen = [ex for s in ("validation", "test") for ex in b.splits[s]
            if ex.extra["entity_split"] == "seen"]
    assert seen and all((key(ex) in trained) == repeats for ex in seen)
    unseen = [ex for ex in b.splits["test"] if ex.extra["entity_split"] == "unseen"]
    assert not {ex.extra["subject"] for ex in unseen} & {s for s, _ in trained}
  seen_asked = [key(ex) for s in ("validation", "test") for ex in asked.splits[s]
                if ex.extra["entity_split"] == "seen"]
  assert len(seen_asked) == len(set(seen_asked))  # each training question at most once


@pytest.mark.parametrize("change", [{"hops": (4,)}, {"seen_questions": "twice"}, {"num_continents": 3},
                                    {"distractor_difficulty": 1.5}, {"num_entities": 2},
                                    {"num_cities": 5, "num_countries": 6}])
def test_bad_config_is_rejected(change):
  with pytest.raises(ValueError):
    dataclasses.replace(TINY, **change)


def test_command_writes_the_benchmark(tmp_path, capsys):
  parser = argparse.ArgumentParser()
  data_synthetic.add_arguments(parser)
  args = parser.parse_args(["--out", str(tmp_path), "--num_entities", "60", "--hops", "2",
                            "--num_validation", "10", "--num_test", "10", "--seed", "5"])
  assert data_synthetic.run(args) == 0
  counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert counts["test"] == 10 == len(read_examples(tmp_path / "examples" / "test.jsonl"))
  manifest = json.loads((tmp_path / "manifest.json").read_text())
  assert manifest["config"]["num_entities"] == 60 and manifest["config"]["hops"] == [2]


def test_command_rejects_bad_flags(tmp_path, capsys):
  parser = argparse.ArgumentParser()
  data_synthetic.add_arguments(parser)
  args = parser.parse_args(["--out", str(tmp_path), "--num_continents", "2"])
  assert data_synthetic.run(args) == 2
  assert "num_continents" in capsys.readouterr().err
  assert not os.listdir(tmp_path)


def test_text_answer_format_names_the_choice_and_parses_back_to_its_label():
  from kard_jax.data import prompts

  bench = generate(dataclasses.replace(TINY, answer_format="text"))
  by_id = {ex.id: ex for ex in bench.splits["train"]}
  for r in bench.rationales:
    ex = by_id[r.id]
    gold_text = next(c.text for c in ex.choices if c.label == ex.answer)
    assert r.rationale.endswith(f"So, the answer is {gold_text}.") and r.answer == ex.answer
    assert parse_answer(r.rationale, ex.choices) == ex.answer
    target = prompts.render_target("answer_only", ex)
    assert target == f"The answer is {gold_text}." and parse_answer(target, ex.choices) == ex.answer
  label_bench = generate(TINY)  # the default keeps labels, and the same questions
  assert [ex.question for ex in label_bench.splits["test"]] == [
      ex.question for ex in bench.splits["test"]]
  assert "answer_format" not in label_bench.splits["test"][0].extra
  with pytest.raises(ValueError, match="answer_format"):
    SyntheticConfig(answer_format="letter")
