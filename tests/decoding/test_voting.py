"""Self-consistency voting and its documented tie rule."""

import math

import pytest

from kard_jax.decoding.voting import majority_vote

LABELS = ["A", "B", "C", "D"]


def test_most_votes_wins_regardless_of_log_probs():
  vote = majority_vote(["B", "C", "B", None, "C", "B"], LABELS, [-9, -1, -9, 0, -1, -9])
  assert vote.label == "B"
  assert vote.counts == {"B": 3, "C": 2}


def test_equal_votes_break_by_summed_log_prob():
  vote = majority_vote(["C", "A", "C", "A", "D"], LABELS, [-2.0, -1.0, -2.0, -1.5, -0.1])
  assert vote.label == "A"  # A: -2.5 beats C: -4.0; D has fewer votes
  assert vote.log_prob_sums["A"] == pytest.approx(-2.5)


def test_full_tie_breaks_by_choice_order_not_sample_order():
  assert majority_vote(["D", "B"], LABELS, [-1.0, -1.0]).label == "B"
  assert majority_vote(["yes", "no"], ["no", "yes"]).label == "no"


def test_unparsed_and_unknown_answers_do_not_vote():
  assert majority_vote([None, "Z", None], LABELS, [0, 0, 0]).label is None
  vote = majority_vote([None, "Z", "D"], LABELS, [0, 0, -math.inf])
  assert vote.label == "D" and vote.counts == {"D": 1}


def test_mismatched_lengths_raise():
  with pytest.raises(ValueError):
    majority_vote(["A"], LABELS, [0.0, 1.0])
