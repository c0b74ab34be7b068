"""Claims follow the numbers: the generated sentences against hand-made result rows."""

from __future__ import annotations

from kard_jax.report import claims
from kard_jax.report import tables as report


def _row(method, name, acc, lo, hi, decoding="greedy"):
  return {"method": method, "name": name, "decoding": decoding, "accuracy": {"unseen": acc},
          "interval": {"unseen": [lo, hi]}, "counts": {"unseen": 150}}


def _results(rows, sweep=None):
  out = {"benchmark": "synthetic", "config": {"synthetic": {"num_choices": 4}}, "rows": rows}
  if sweep:
    out["sweep"] = sweep
  return out


def test_versus_chance_uses_the_interval_ends():
  assert claims.versus_chance([25.1, 40.0], 25.0) == "above chance"
  assert claims.versus_chance([24.9, 40.0], 25.0) == "not distinguishable from chance"
  assert claims.versus_chance([10.0, 24.0], 25.0) == "below chance"


def test_versus_needs_separated_intervals():
  assert claims.versus([50.0, 60.0], [30.0, 49.0]) == "above"
  assert claims.versus([50.0, 60.0], [30.0, 50.5]) == "not separated"
  assert claims.versus([10.0, 20.0], [30.0, 40.0]) == "below"


def test_sentences_say_only_what_the_intervals_support():
  rows = [_row("answer_only", "Fine-tuning", 30.0, 26.0, 34.0),
          _row("reasoning", "Reasoning distillation", 30.0, 24.0, 36.0),
          _row("kard_bm25", "KARD (BM25)", 40.0, 35.0, 45.0),
          _row("kard_rerank", "KARD (reranker)", 38.0, 33.0, 43.0)]
  text = "\n".join(claims.sentences(_results(rows)))
  assert "above chance (25%): Reasoning distillation" not in text
  above = next(s for s in text.splitlines() if "above chance" in s)
  assert "Fine-tuning" in above and "KARD (BM25)" in above and "Reasoning" not in above
  undecided = next(s for s in text.splitlines() if "not distinguishable" in s)
  assert "Reasoning distillation" in undecided
  assert "KARD (BM25) is above Fine-tuning" in text
  assert "KARD (BM25) and Reasoning distillation are not separated" in text
  assert "KARD (reranker) and KARD (BM25) are not separated" in text


def test_sweep_sentences_per_size_and_recall():
  sweep = {"x": "num_entities", "rows": [
      {"num_entities": 100, **_row("kard_bm25", "KARD (BM25)", 90.0, 85.0, 95.0)},
      {"num_entities": 100, **_row("answer_only", "Fine-tuning", 95.0, 92.0, 98.0)},
      {"num_entities": 1000, **_row("kard_bm25", "KARD (BM25)", 90.0, 85.0, 95.0)},
      {"num_entities": 1000, **_row("answer_only", "Fine-tuning", 30.0, 20.0, 40.0)}],
      "retrieval": {"100": {"question BM25": {"recall@1": 80.0}, "reranker": {"recall@1": 90.0}}}}
  text = claims.sentences(_results([], sweep))
  assert any(s.startswith("At 100 num entities") and "not separated" in s for s in text)
  assert any(s.startswith("At 1000 num entities") and "KARD (BM25) is above Fine-tuning" in s
             for s in text)
  assert any("reranker's recall@1 (90.0%) is above question BM25's (80.0%)" in s for s in text)


def test_the_table_carries_the_sentences_and_intervals():
  rows = [_row("answer_only", "Fine-tuning", 27.0, 22.0, 32.0),
          _row("kard_bm25", "KARD (BM25)", 40.0, 35.0, 45.0)]
  md = report.markdown(_results(rows))
  assert "40.0 [35.0, 45.0]" in md
  for sentence in claims.sentences(_results(rows)):
    assert f"- {sentence}" in md


def test_targets_are_reported_with_their_shortfall():
  rows = [_row("kard_bm25", "KARD (BM25)", 52.5, 45.0, 60.0)]
  text = claims.sentences(_results(rows))
  assert any("Target KARD (BM25) unseen accuracy >= 60%: not reached, 7.5 points short" in s
             for s in text)
  rows = [_row("kard_bm25", "KARD (BM25)", 61.0, 55.0, 67.0)]
  assert any("unseen accuracy >= 60%: reached" in s for s in claims.sentences(_results(rows)))
