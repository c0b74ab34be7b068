"""Teacher prompts and the built-in exemplars."""

import json
import re

import pytest

from kard_jax.data import benchmarks
from kard_jax.data.answers import parse_answer
from kard_jax.data.errors import InputError
from kard_jax.data.example import Choice, Example
from kard_jax.teacher import exemplars
from kard_jax.teacher.prompts import PromptBuilder, Sampling, request_hash

EXAMPLE = Example("x1", "Which gas do plants take in for photosynthesis?",
                  (Choice("A", "oxygen"), Choice("B", "carbon dioxide"), Choice("C", "helium")),
                  "B")


@pytest.mark.parametrize("benchmark", sorted(exemplars.EXEMPLARS))
def test_exemplars_end_with_their_own_answer(benchmark):
  shots = exemplars.exemplars_for(benchmark)
  assert 3 <= len(shots) <= 6
  exemplars.check(shots, benchmark)
  for shot in shots:
    assert parse_answer(shot.explanation, shot.choices) is None  # the ending comes from us
    assert shot.rationale.endswith(f"So, the answer is ({shot.answer}) "
                                   f"{shot.answer_choice.text.rstrip('.')}.")
  assert len({s.answer for s in shots}) > 1  # not always the same letter


def test_exemplars_use_the_loaders_label_conventions():
  for shot in exemplars.STRATEGYQA:
    assert shot.choices == benchmarks.YES_NO
  for shot in exemplars.MEDQA + exemplars.OBQA + exemplars.ARC + exemplars.SYNTHETIC:
    assert [c.label for c in shot.choices] == list("ABCD")[:len(shot.choices)]


def test_chat_messages_give_or_withhold_the_answer():
  shots = exemplars.OBQA[:2]
  given = PromptBuilder(shots, give_answer=True).messages(EXAMPLE)
  assert [m["role"] for m in given] == ["system", "user", "assistant", "user", "assistant", "user"]
  assert given[2]["content"] == shots[0].rationale
  assert "Correct answer: (B) carbon dioxide" in given[-1]["content"]
  assert "(C) helium" in given[-1]["content"]
  honest = PromptBuilder(shots, give_answer=False).messages(EXAMPLE)
  assert all("Correct answer" not in m["content"] for m in honest)
  assert honest[0]["content"] != given[0]["content"]


def test_completion_prompt_continues_after_explanation():
  builder = PromptBuilder(exemplars.ARC, give_answer=True, mode="completions")
  payload = builder.payload(EXAMPLE, Sampling(0.5, 128))
  prompt = payload["prompt"]
  assert prompt.endswith("Correct answer: (B) carbon dioxide\nExplanation:")
  assert prompt.count("Question: ") == len(exemplars.ARC) + 1
  assert all(f"Explanation: {s.rationale}" in prompt for s in exemplars.ARC)
  assert payload["stop"] == ["\nQuestion:"]
  assert (payload["temperature"], payload["max_tokens"]) == (0.5, 128)
  assert "top_p" not in payload


def test_request_hash_tracks_what_shapes_the_samples():
  builder = PromptBuilder(exemplars.ARC)
  base = request_hash(builder.payload(EXAMPLE, Sampling()), "m", "chat")
  assert base == request_hash(builder.payload(EXAMPLE, Sampling()), "m", "chat")
  others = {
      request_hash(builder.payload(EXAMPLE, Sampling(temperature=1.0)), "m", "chat"),
      request_hash(builder.payload(EXAMPLE, Sampling()), "m2", "chat"),
      request_hash(PromptBuilder(exemplars.ARC, give_answer=False).payload(EXAMPLE, Sampling()),
                   "m", "chat"),
      request_hash(PromptBuilder(exemplars.ARC[:2]).payload(EXAMPLE, Sampling()), "m", "chat"),
  }
  assert base not in others and len(others) == 4


def test_load_exemplars_from_a_file(tmp_path):
  rows = [dict(EXAMPLE.to_json(), explanation="Plants take in carbon dioxide."),
          dict(EXAMPLE.to_json(), explanation="They take in CO2. So, the answer is B.")]
  path = tmp_path / "shots.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  shots = exemplars.load_exemplars(path)
  assert shots[0].rationale.endswith("So, the answer is (B) carbon dioxide.")
  assert shots[1].rationale == "They take in CO2. So, the answer is B."
  rows[1]["explanation"] = "So, the answer is A."
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  with pytest.raises(InputError, match="concludes 'A'") as e:
    exemplars.load_exemplars(path)
  assert e.value.line == 2
  with pytest.raises(ValueError, match="no built-in exemplars"):
    exemplars.exemplars_for("gsm8k")


def test_exemplars_are_not_benchmark_questions(shared_data):
  """Our exemplars are our own: none is a question of the real training or evaluation files."""
  def _norm(text):
    return re.sub(r"\W+", " ", text.lower()).strip()

  real = set()
  for name, path in [("obqa", "obqa/train.jsonl"), ("obqa", "obqa/test.jsonl"),
                     ("arc", "arc/ARC-Easy-Train.jsonl"), ("arc", "arc/ARC-Easy-Test.jsonl"),
                     ("strategyqa", "strategyqa/strategyqa_train.json")]:
    real |= {_norm(ex.question) for ex in benchmarks.load_benchmark(name, shared_data / path)}
  assert len(real) > 10_000
  for shots in exemplars.EXEMPLARS.values():
    for shot in shots:
      assert _norm(shot.question) not in real, shot.question
  # The prompt of a real example renders all its choices, whatever their number.
  arc = benchmarks.load_benchmark("arc", shared_data / "arc" / "ARC-Easy-Dev.jsonl")
  odd = next(ex for ex in arc if len(ex.choices) != 4)
  last = PromptBuilder(exemplars.ARC).messages(odd)[-1]["content"]
  assert all(f"({c.label}) {c.text.strip()}" in last for c in odd.choices)
