"""Answer filter, cap, and the verifier hook."""

import pytest

from kard_jax.data.example import Choice, Example
from kard_jax.data.prompts import strip_answer
from kard_jax.data.rationale import Rationale
from kard_jax.teacher import filtering

YES_NO = (Choice("A", "yes"), Choice("B", "no"))
EXAMPLES = [Example("e1", "Is ice cold?", YES_NO, "A"), Example("e2", "Is fire cold?", YES_NO, "B")]


def raw_samples():
  report = filtering.FilterReport()
  texts = {"e1": ["Ice is frozen water. So, the answer is yes.", "", "So, the answer is (B) no.",
                  "Hmm.", "Ice melts only above zero degrees. So, the answer is (A) yes.",
                  "It is cold. The answer is yes."],
           "e2": ["Fire is hot. So, the answer is (A) yes."]}
  rationales = []
  for ex in EXAMPLES:
    rationales += filtering.to_rationales(ex, enumerate(texts[ex.id]), "t", {"n": 6}, report)
  return rationales, report


def test_counts_every_reason_a_sample_is_dropped():
  rationales, report = raw_samples()
  kept, report = filtering.select(rationales, EXAMPLES, max_per_example=2, report=report)
  assert [(r.id, r.sample, r.answer) for r in kept] == [("e1", 0, "A"), ("e1", 4, "A")]
  assert (report.samples, report.empty, report.unparsed, report.wrong_answer) == (7, 1, 1, 2)
  assert (report.over_cap, report.kept, report.examples_without_rationale) == (1, 2, 1)
  assert report.verifier_filtered_share is None
  assert report.samples == (report.empty + report.unparsed + report.wrong_answer
                            + report.over_cap + report.kept)


class RejectsShort:
  """A simple verifier: a rationale must say more than its answer."""

  def __init__(self):
    self.seen = []

  def verify(self, example, rationale):
    self.seen.append((example.id, rationale.sample))
    return len(strip_answer(rationale.rationale).split()) >= 5


class Batched(RejectsShort):

  def verify(self, example, rationale):
    raise AssertionError("a verifier with verify_batch gets batches")

  def verify_batch(self, pairs):
    self.seen.append(len(pairs))
    return [len(strip_answer(r.rationale).split()) >= 5 for _, r in pairs]


@pytest.mark.parametrize("verifier_cls", [RejectsShort, Batched])
def test_verifier_sees_only_gold_matching_rationales_and_its_share_is_reported(verifier_cls):
  rationales, report = raw_samples()
  verifier = verifier_cls()
  assert isinstance(verifier, filtering.Verifier)
  kept, report = filtering.select(rationales, EXAMPLES, verifier=verifier, report=report)
  assert [r.sample for r in kept] == [4]  # 0 and 5 state too little before their answer
  assert report.verified == 3 and report.verifier_rejected == 2
  assert report.as_dict()["verifier_filtered_share"] == pytest.approx(2 / 3, abs=1e-4)
  expected = [3] if verifier_cls is Batched else [("e1", 0), ("e1", 4), ("e1", 5)]
  assert verifier.seen == expected


def test_reader_verifier_reads_question_and_rationale_without_its_answer():
  inputs = []

  def predict(texts):
    inputs.extend(texts)
    # A reader that believes the explanation: "cold" -> yes, otherwise no.
    return ["yes" if "cold" in t.split("Explanation:")[1] else "(B) no" for t in texts]

  verifier = filtering.ReaderVerifier(predict)
  good = Rationale("e1", 0, "Ice is cold. So, the answer is (A) yes.", "A")
  bad = Rationale("e1", 1, "Ice is frozen. So, the answer is (A) yes.", "A")
  assert verifier.verify_batch([(EXAMPLES[0], good), (EXAMPLES[0], bad)]) == [True, False]
  assert inputs[0] == ("Question: Is ice cold? Answer Choices: (A) yes (B) no "
                       "Explanation: Ice is cold. Answer:")
  assert "the answer is" not in inputs[1]


def make_verifier(min_words="4"):
  verifier = RejectsShort()
  verifier.min_words = int(min_words)
  return verifier


def test_load_verifier_by_name():
  verifier = filtering.load_verifier("tests.teacher.test_filtering:make_verifier",
                                     {"min_words": "6"})
  assert isinstance(verifier, RejectsShort) and verifier.min_words == 6
  with pytest.raises(ValueError, match="module.path:factory"):
    filtering.load_verifier("no_colon")
  with pytest.raises(TypeError, match="verify"):
    filtering.load_verifier("collections:OrderedDict")
