"""The answer a rationale's reasoning reaches, apart from the letter it states."""

import json

import pytest

from kard_jax.data.example import Choice, Example
from kard_jax.report import results

CHOICES = (Choice("A", "Daake"), Choice("B", "Zhubrii"), Choice("C", "Bezhaim"),
           Choice("D", "Rikruur"))
EXAMPLE = Example("q1", "In which country does Traimiix Lekri live?", CHOICES, "A")


def test_the_choice_mentioned_last_is_the_one_the_reasoning_reaches():
  text = "Traimiix Lekri lives in Bezhaim. Bezhaim is a city in Daake. So, the answer is C."
  assert results.last_choice_mentioned(text, EXAMPLE) == "A"  # not the stated C
  assert results.last_choice_mentioned("He lives somewhere. So, the answer is A.", EXAMPLE) is None


@pytest.mark.parametrize("rationale, want", [
    ("He lives in Bezhaim. Bezhaim is in Daake. So, the answer is C.", 100.0),
    ("He lives in Bezhaim. So, the answer is A.", 0.0),
])
def test_reasoning_recount_scores_the_reached_choice(tmp_path, rationale, want):
  path = tmp_path / "predictions.jsonl"
  path.write_text(json.dumps({"id": "q1", "rationales": [rationale], "prediction": "C"}) + "\n")
  counted = results.reasoning_recount(str(path), [EXAMPLE])
  assert counted["accuracy"]["all"] == want
