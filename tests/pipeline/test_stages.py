"""Content-addressed stages, the assembled layout, result recounts and the report (no JAX)."""

from __future__ import annotations

import json
import os

import pytest

from kard_jax.data.example import Choice, Example
from kard_jax.data.jsonl import write_jsonl
from kard_jax.pipeline import layout, stages
from kard_jax.report import results
from kard_jax.report import tables as report


def _writer(name, content, calls):
  def make(out):
    calls.append(out)
    with open(os.path.join(out, name), "w") as f:
      f.write(content)
    return {"wrote": name}
  return make


def test_a_finished_stage_is_reused_and_a_changed_input_reruns_only_dependants(tmp_path):
  store = stages.Store(str(tmp_path), log=lambda m: None)
  calls = []
  a = store.run("a", _writer("x.txt", "one", calls), config={"n": 1})
  b = store.run("b", _writer("y.txt", "two", calls), inputs={"a": a})
  assert len(calls) == 2 and not a.reused
  assert stages.read_manifest(a.path)["summary"] == {"wrote": "x.txt"}

  again = stages.Store(str(tmp_path), log=lambda m: None)
  a2 = again.run("a", _writer("x.txt", "one", calls), config={"n": 1})
  b2 = again.run("b", _writer("y.txt", "two", calls), inputs={"a": a2})
  assert len(calls) == 2 and a2.reused and b2.reused
  assert (a2.path, b2.path, b2.content_hash) == (a.path, b.path, b.content_hash)
  assert [r["status"] for r in again.records] == ["reused", "reused"]

  # A new config gives a new directory; identical content keeps the dependant's key.
  a3 = again.run("a", _writer("x.txt", "one", calls), config={"n": 2})
  assert a3.path != a.path and a3.content_hash == a.content_hash
  b3 = again.run("b", _writer("y.txt", "two", calls), inputs={"a": a3})
  assert b3.reused and len(calls) == 3
  # Different content does re-run the dependant.
  a4 = again.run("a", _writer("x.txt", "other", calls), config={"n": 3})
  b4 = again.run("b", _writer("y.txt", "two", calls), inputs={"a": a4})
  assert not b4.reused and b4.path != b.path and len(calls) == 5


def test_unfinished_stage_reruns_in_place_and_done_is_written_last(tmp_path):
  store = stages.Store(str(tmp_path), log=lambda m: None)
  seen = []

  def crash(out):
    with open(os.path.join(out, "partial"), "w") as f:
      f.write("half")
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    store.run("t", crash)
  (leftover,) = list((tmp_path / "stages" / "t").iterdir())
  assert (leftover / "partial").exists() and not (leftover / stages.MANIFEST).exists()

  def resume(out):
    seen.append(sorted(os.listdir(out)))
    return None

  art = store.run("t", resume)
  assert art.path == str(leftover) and seen == [["partial"]]
  assert json.loads((leftover / stages.MANIFEST).read_text())["key"] == art.key


def test_only_and_force(tmp_path):
  calls = []
  store = stages.Store(str(tmp_path), runnable={"eval"}, log=lambda m: None)
  with pytest.raises(stages.MissingStage):
    store.run("bench/train/x", _writer("m", "1", calls))
  art = store.run("bench/eval/x", _writer("p", "1", calls))
  assert len(calls) == 1
  forced = stages.Store(str(tmp_path), force={"eval/x"}, log=lambda m: None)
  with open(os.path.join(art.path, "stale"), "w") as f:
    f.write("old")
  again = forced.run("bench/eval/x", _writer("p", "1", calls))
  assert not again.reused and not os.path.exists(os.path.join(again.path, "stale"))
  assert stages.matches("syn_e100/train/kard_bm25", {"train"})
  assert stages.matches("syn_e100/train/kard_bm25", {"train/kard_bm25"})
  assert not stages.matches("syn_e100/train/kard_bm25", {"eval"})


def test_tree_hash_ignores_links_and_volatile_files(tmp_path):
  d = tmp_path / "d"
  d.mkdir()
  (d / "a.txt").write_text("a")
  first = stages.hash_tree(str(d))
  (d / "events.out.tfevents.123").write_text("clock")
  (d / stages.MANIFEST).write_text("{}")
  os.symlink(tmp_path / "elsewhere", d / "link")
  assert stages.hash_tree(str(d)) == first
  (d / "a.txt").write_text("b")
  assert stages.hash_tree(str(d)) != first


def test_layout_links_and_relinks(tmp_path):
  one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
  one.write_text("1")
  two.write_text("2")
  view = tmp_path / "view"
  layout.assemble(str(view), {"examples/train.jsonl": str(one)})
  assert (view / "examples" / "train.jsonl").read_text() == "1"
  layout.assemble(str(view), {"examples/train.jsonl": str(two)})
  assert (view / "examples" / "train.jsonl").read_text() == "2"
  (view / "real").write_text("not a link")
  with pytest.raises(FileExistsError):
    layout.assemble(str(view), {"real": str(one)})


def _example(i, answer, split):
  return Example(f"e{i}", f"Question {i}?", (Choice("A", "red"), Choice("B", "blue")), answer,
                 {"entity_split": split})


def test_recount_votes_and_groups(tmp_path):
  examples = [_example(0, "A", "seen"), _example(1, "B", "unseen"), _example(2, "B", "unseen")]
  path = str(tmp_path / "p.jsonl")
  write_jsonl(path, [
      {"id": "e0", "rationales": ["So, the answer is A.", "So, the answer is B.",
                                  "So, the answer is A."], "scores": [-1.0, -0.5, -2.0]},
      {"id": "e1", "rationales": ["The answer is (B) blue."], "scores": [-1.0]},
      {"id": "e2", "prediction": "no idea"},
  ])
  counted = results.recount(path, examples, "entity_split")
  assert counted["accuracy"] == {"all": pytest.approx(200 / 3), "seen": 100.0, "unseen": 50.0}
  assert counted["counts"] == {"all": 3, "seen": 1, "unseen": 2}
  assert counted["parse_rate"] == pytest.approx(400 / 5)
  write_jsonl(path, [{"id": "e0", "prediction": "A"}])
  with pytest.raises(Exception, match="no prediction"):
    results.recount(path, examples)


def test_report_renders_table_and_plot(tmp_path):
  res = {
      "command": "kard pipeline", "benchmark": "synthetic", "split": "test",
      "rows": [{"method": "answer_only", "name": "Fine-tuning", "decoding": "greedy",
                "accuracy": {"all": 30.0, "seen": 40.0, "unseen": 25.0},
                "counts": {"all": 8, "seen": 4, "unseen": 4}, "parse_rate": 100.0},
               {"method": "kard_bm25", "name": "KARD (BM25)", "decoding": "self-consistency@5",
                "accuracy": {"all": 70.0, "seen": 80.0, "unseen": 60.0},
                "counts": {"all": 8, "seen": 4, "unseen": 4}, "parse_rate": 98.0}],
      "sweep": {"x": "num_entities", "group": "unseen", "rows": [
          {"num_entities": n, "method": m, "name": m, "accuracy": {"unseen": a}}
          for n, m, a in [(10, "answer_only", 30.0), (100, "answer_only", 25.0),
                          (10, "kard_bm25", 60.0), (100, "kard_bm25", 58.0)]]},
      "retrieval": {"question BM25": {"recall@1": 50.0, "recall@3": 75.0}},
      "timing": {"total_seconds": 12.0},
  }
  paths = report.write_report(res, str(tmp_path), "syn")
  md = (tmp_path / "syn.md").read_text()
  assert "| KARD (BM25) | self-consistency@5 | 1 | 70.0 | 60.0 | 80.0 | 98.0 |" in md
  assert "| kard_bm25 | 1 | 60.0 | 58.0 |" in md and "recall@3" in md and "`kard pipeline`" in md
  assert report.render_file(paths["json"]) == md
  png = (tmp_path / "syn.png").read_bytes()
  assert png.startswith(b"\x89PNG") and len(png) > 10_000
