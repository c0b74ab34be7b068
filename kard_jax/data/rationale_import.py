"""Importing rationales collected elsewhere into our `Rationale` format.

The source is JSON lines keyed by question:
  {"qid": "..." | null, "question": "...", "gold_answer": true | "B" | null,
   "teacher_model": "gpt-3.5-turbo-instruct", "rationale": "...", "teacher_answer": "Yes" | "B"}
(the StrategyQA rationales in ../shared/data/rationales/ have exactly this shape). Each line is
matched to an example by `qid`; lines whose qid is null or unknown are matched by question text,
compared case-, space- and punctuation-insensitively (21 of the 1,496 StrategyQA questions need
this). The answer is the teacher's own `teacher_answer` when the line has one (the prose may
open with a "Yes," that agrees with a paraphrase: "Yes, Augustus was not his real name"), else
the one parsed from the rationale. Unless the rationale's last sentence already states that
answer, an answer statement ("So, the answer is (A) yes.") is appended so that every stored
rationale ends the way students are trained to end. `sample` numbers each example's rationales in file order.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from kard_jax.data import jsonl
from kard_jax.data.answers import answer_statement, parse_answer
from kard_jax.data.errors import InputError
from kard_jax.data.example import Choice, Example
from kard_jax.data.rationale import Rationale


def _question_key(question: str) -> str:
  return re.sub(r"[^\w]+", " ", question.lower()).strip()


def _last_sentence(text: str) -> str:
  return re.split(r"(?<=[.!?])\s+", text.strip())[-1]


def _value_label(value: Any, choices: Sequence[Choice]) -> str | None:
  """A gold or teacher answer as a label: a bool means yes/no, a string a label or choice text."""
  if isinstance(value, bool):
    value = "yes" if value else "no"
  if not isinstance(value, str):
    return None
  return parse_answer(value, choices)


def import_rationales(path, examples: Sequence[Example] | Mapping[str, Example], *,
                      append_answer: bool = True,
                      sampling: Mapping[str, Any] | None = None) -> list[Rationale]:
  """Reads a rationale file of the shape above into `Rationale`s for `examples`.

  `examples` should be the whole labelled set (all splits); select a split afterwards with
  `answers.filter_rationales` or by id. Raises InputError for a line that matches no example, whose
  gold answer disagrees with the example's, or whose answer cannot be read.
  """
  by_id = dict(examples) if isinstance(examples, Mapping) else {ex.id: ex for ex in examples}
  by_question: dict[str, str | None] = {}
  for ex in by_id.values():
    key = _question_key(ex.question)
    by_question[key] = None if key in by_question else ex.id  # None: ambiguous
  counts: dict[str, int] = {}
  out: list[Rationale] = []
  for line, obj in jsonl.iter_jsonl(path):
    for key in ("question", "rationale"):
      if not isinstance(obj.get(key), str):
        raise InputError(path, f"missing field {key!r}", line)
    qid, question = obj.get("qid"), obj["question"]
    if qid is not None and str(qid) in by_id:
      example = by_id[str(qid)]
      if _question_key(example.question) != _question_key(question):
        raise InputError(path, f"question differs from example {example.id!r}'s: {question!r}",
                         line)
    else:
      example_id = by_question.get(_question_key(question))
      if example_id is None:
        why = "matches several examples" if _question_key(question) in by_question else (
            "matches no example")
        raise InputError(path, f"qid {qid!r} / question {question!r} {why}", line)
      example = by_id[example_id]
    gold = obj.get("gold_answer")
    if gold is not None and _value_label(gold, example.choices) != example.answer:
      raise InputError(path, f"gold_answer {gold!r} disagrees with example {example.id!r} "
                       f"(answer {example.answer})", line)
    text = obj["rationale"].strip()
    if not text:
      raise InputError(path, f"empty rationale for example {example.id!r}", line)
    answer = _value_label(obj.get("teacher_answer"), example.choices)
    if answer is None:
      answer = parse_answer(text, example.choices)
      if answer is None:
        raise InputError(path, f"cannot read an answer from the rationale or teacher_answer "
                         f"{obj.get('teacher_answer')!r}", line)
    if append_answer and parse_answer(_last_sentence(text), example.choices) != answer:
      choice = next(c for c in example.choices if c.label == answer)
      text = f"{text}\n\n{answer_statement(choice)}"
    sample = counts.get(example.id, 0)
    counts[example.id] = sample + 1
    out.append(Rationale(id=example.id, sample=sample, rationale=text, answer=answer,
                         teacher=str(obj.get("teacher_model") or ""),
                         sampling=dict(sampling or {})))
  return out
