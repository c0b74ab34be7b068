"""KARD's retrieval modes, retrieval files and re-scoring targets."""

import json

import numpy as np
import pytest

from kard_jax.data.errors import InputError
from kard_jax.data.example import Choice, Example
from kard_jax.data.rationale import Rationale
from kard_jax.retrieval.bm25_index import load_index
from kard_jax.retrieval.rescore import rationale_targets, rescore
from kard_jax.retrieval.retrieval_file import (RetrievalRecord, RetrievedPassage,
                                               read_retrieval_file, standard_name,
                                               write_retrieval_file)
from kard_jax.retrieval.retrieve import retrieve_questions, retrieve_rationales

EXAMPLES = [
    Example("e1", "Which ancient castle has a golden tower?",
            (Choice("A", "harbor"), Choice("B", "temple")), "A"),
    Example("e2", "Who swims near the island?", (Choice("A", "sailor"), Choice("B", "king")), "A"),
]
RATIONALES = [Rationale("e1", 0, "The castle tower was golden and ancient. So, the answer is A.",
                        "A"),
              Rationale("e1", 1, "A harbor market sells red bridges. So, the answer is A.", "A"),
              Rationale("e2", 0, "Sailors swim near islands and the ocean.", "A")]


@pytest.fixture()
def index(index_dir):
  idx = load_index(index_dir)
  yield idx
  idx.close()


def test_question_and_rationale_modes_write_the_shared_format(tmp_path, index):
  questions = retrieve_questions(index, EXAMPLES, k=100, show_progress=False)
  assert [(r.id, r.sample, r.query) for r in questions] == [("e1", None, "question"),
                                                            ("e2", None, "question")]
  assert 0 < len(questions[0].passages) <= 100
  rationales = retrieve_rationales(index, RATIONALES, k=5, show_progress=False)
  assert [r.key for r in rationales] == [("e1", 0), ("e1", 1), ("e2", 0)]
  assert all(len(r.passages) == 5 for r in rationales)
  path = tmp_path / "retrieval" / standard_name("question", "test")
  write_retrieval_file(path, questions)
  line = json.loads(path.read_text().splitlines()[0])
  assert set(line) == {"id", "sample", "query", "passages"}
  assert set(line["passages"][0]) == {"id", "title", "text", "score"}
  back = read_retrieval_file(path)
  assert [p.id for p in back[0].passages] == [p.id for p in questions[0].passages]
  # Scores survive the file as the same float32 values.
  np.testing.assert_array_equal(np.float32([p.score for p in back[0].passages]),
                                np.float32([p.score for p in questions[0].passages]))
  p0 = questions[0].passages[0]
  assert index.passages[index.passages.position(p0.id)].text == p0.text


def test_with_choices_changes_the_query(index):
  plain = retrieve_questions(index, EXAMPLES[:1], show_progress=False)[0]
  with_choices = retrieve_questions(index, EXAMPLES[:1], with_choices=True, show_progress=False)[0]
  assert [p.id for p in plain.passages] != [p.id for p in with_choices.passages]


def test_rationale_targets_are_bm25_scores_of_the_candidates(index):
  candidates = retrieve_questions(index, EXAMPLES, k=50, show_progress=False)
  targets = rationale_targets(index, candidates, RATIONALES)
  assert set(targets) == {("e1", 0), ("e1", 1), ("e2", 0)}
  own = {r.key: r for r in retrieve_rationales(index, RATIONALES, k=len(index),
                                               show_progress=False)}
  for (eid, sample), scores in targets.items():
    cand = next(c for c in candidates if c.id == eid)
    assert scores.shape == (len(cand.passages),) and scores.dtype == np.float32
    full = {p.id: p.score for p in own[(eid, sample)].passages}  # full rationale retrieval
    want = np.float32([full.get(p.id, 0.0) for p in cand.passages])
    np.testing.assert_array_equal(scores, want)
  ids = [p.id for p in candidates[0].passages[:3]]
  np.testing.assert_array_equal(rescore(index, RATIONALES[0].rationale, ids),
                                targets[("e1", 0)][:3])
  with pytest.raises(KeyError, match="not in the index"):
    rescore(index, "castle", ["no-such-passage"])


def _line(**kw):
  obj = {"id": "e", "sample": None, "query": "question",
         "passages": [{"id": "p", "title": "", "text": "t", "score": 2.0},
                      {"id": "q", "title": "", "text": "u", "score": 1.0}]}
  obj.update(kw)
  return json.dumps(obj)


@pytest.mark.parametrize("bad,match", [
    ({"query": "bogus"}, "query must be"),
    ({"sample": "0"}, "sample"),
    ({"passages": [{"id": "p", "text": "t", "score": 1.0}, {"id": "q", "text": "u", "score": 3.0}]},
     "best first"),
    ({"passages": [{"id": "p", "score": 1.0}]}, "malformed passage"),
])
def test_bad_retrieval_files_name_the_line(tmp_path, bad, match):
  path = tmp_path / "r.jsonl"
  path.write_text(_line() + "\n" + _line(id="f", **bad) + "\n")
  with pytest.raises(InputError, match=match) as e:
    read_retrieval_file(path)
  assert e.value.line == 2


def test_duplicate_keys_rejected(tmp_path):
  path = tmp_path / "r.jsonl"
  path.write_text(_line() + "\n" + _line() + "\n")
  with pytest.raises(InputError, match="duplicate"):
    read_retrieval_file(path)
  rec = RetrievalRecord("e", 3, "rationale", (RetrievedPassage("p", "", "t", 0.1),))
  write_retrieval_file(path, [rec])
  assert read_retrieval_file(path) == [rec]
