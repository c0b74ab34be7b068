"""Few-shot chain-of-thought prompts for the teacher, as chat messages or one completion prompt.

Two settings, as in KARD and its baselines:
  give_answer=True   the teacher sees the gold answer and explains it ("rationalisation", what KARD
                     does with ChatGPT); nearly every rationale then reaches the gold answer.
  give_answer=False  an honest few-shot teacher that must find the answer itself; the answer filter
                     then removes its mistakes.
Either way the teacher is shown rationales that end with the answer statement `parse_answer`
reads, and is asked to end the same way.

A request is identified by `request_hash`: the hash of everything that shapes the distribution of
its samples (model, endpoint kind, prompt, sampling settings), never of `n` or the seed. The
journal keys samples by it, so a rerun with the same settings reuses them and any change asks anew.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping, Sequence

from kard_jax.data.example import Choice, Example
from kard_jax.teacher.exemplars import Exemplar

ENDING = 'End with the sentence "So, the answer is (X) <choice text>." naming the {which} choice.'

SYSTEM_GIVEN = (
    "You are an expert teacher. Each multiple-choice question comes with its correct answer. "
    "Write a short step-by-step explanation that recalls the facts needed and reasons from them "
    "to that answer, as if you were solving the question yourself; do not say that the answer "
    "was given to you. " + ENDING.format(which="correct"))
SYSTEM_OPEN = (
    "You are an expert problem solver. For each multiple-choice question, think step by step: "
    "recall the facts needed and reason from them to an answer. " + ENDING.format(which="chosen"))

# Completion prompts continue after "Explanation:" and stop before the next question.
STOP = ("\nQuestion:",)


@dataclasses.dataclass(frozen=True)
class Sampling:
  temperature: float = 0.7
  max_tokens: int = 256
  top_p: float | None = None

  def as_dict(self) -> dict[str, Any]:
    out = {"temperature": self.temperature, "max_tokens": self.max_tokens}
    if self.top_p is not None:
      out["top_p"] = self.top_p
    return out


def render_question(question: str, choices: Sequence[Choice]) -> str:
  lines = [f"Question: {question.strip()}", "Answer choices:"]
  lines += [f"({c.label}) {c.text.strip()}" for c in choices]
  return "\n".join(lines)


def _given(choices: Sequence[Choice], answer: str) -> str:
  choice = next(c for c in choices if c.label == answer)
  return f"Correct answer: ({choice.label}) {choice.text.strip()}"


@dataclasses.dataclass(frozen=True)
class PromptBuilder:
  """Builds the prompt part of a request body for one example."""
  exemplars: tuple[Exemplar, ...]
  give_answer: bool = True
  mode: str = "chat"  # "chat" or "completions"

  def __post_init__(self):
    if self.mode not in ("chat", "completions"):
      raise ValueError(f"mode must be 'chat' or 'completions', got {self.mode!r}")

  @property
  def system(self) -> str:
    return SYSTEM_GIVEN if self.give_answer else SYSTEM_OPEN

  def _block(self, question: str, choices: Sequence[Choice], answer: str) -> str:
    parts = [render_question(question, choices)]
    if self.give_answer:
      parts.append(_given(choices, answer))
    return "\n".join(parts)

  def messages(self, example: Example) -> list[dict[str, str]]:
    ask = "Explain step by step why this is the answer." if self.give_answer else (
        "Think step by step.")
    out = [{"role": "system", "content": self.system}]
    for ex in self.exemplars:
      out.append({"role": "user", "content": self._block(ex.question, ex.choices, ex.answer) +
                  "\n" + ask})
      out.append({"role": "assistant", "content": ex.rationale})
    block = self._block(example.question, example.choices, example.answer)
    out.append({"role": "user", "content": f"{block}\n{ask}"})
    return out

  def completion_prompt(self, example: Example) -> str:
    blocks = [self.system]
    for ex in self.exemplars:
      blocks.append(f"{self._block(ex.question, ex.choices, ex.answer)}\n"
                    f"Explanation: {ex.rationale}")
    blocks.append(f"{self._block(example.question, example.choices, example.answer)}\n"
                  "Explanation:")
    return "\n\n".join(blocks)

  def payload(self, example: Example, sampling: Sampling) -> dict[str, Any]:
    """The request body for `example` without model, n and seed (the client adds those)."""
    if self.mode == "chat":
      body: dict[str, Any] = {"messages": self.messages(example)}
    else:
      body = {"prompt": self.completion_prompt(example), "stop": list(STOP)}
    body.update(sampling.as_dict())
    return body


def request_hash(payload: Mapping[str, Any], model: str, mode: str) -> str:
  """A short stable hash of everything that decides what a sample of this request looks like."""
  canonical = json.dumps({"model": model, "mode": mode, "payload": payload}, sort_keys=True,
                         ensure_ascii=False, separators=(",", ":"))
  return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
