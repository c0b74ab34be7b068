"""From raw teacher samples to the rationales worth training on.

Three steps, each counted for the summary:
  1. parse   the answer each sample reaches (`answers.parse_answer`); empty samples are dropped.
  2. answer  KARD's filter: keep samples whose answer is the gold one (`answers.filter_rationales`).
  3. verify  optionally, a `Verifier` must also reach the gold answer from question + rationale
             (KARD uses a Flan-T5 reader for this), which removes rationales that name the right
             answer without supporting it.
Then at most `max_per_example` per example are kept, lowest sample index first.

A verifier is anything with `verify(example, rationale) -> bool`; one that also has
`verify_batch(pairs) -> list[bool]` gets all candidates in one batch (what a model wants).
`ReaderVerifier` turns any batched text predictor, such as a student checkpoint's decoder, into
one; `load_verifier("module:factory", {...})` builds one named on the command line.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from kard_jax.data import prompts as student_prompts
from kard_jax.data.answers import filter_rationales, parse_answer
from kard_jax.data.example import Example
from kard_jax.data.rationale import Rationale


@runtime_checkable
class Verifier(Protocol):

  def verify(self, example: Example, rationale: Rationale) -> bool:
    """True when the rationale leads the verifier to the example's gold answer."""
    ...


def verify_all(verifier: Verifier, pairs: Sequence[tuple[Example, Rationale]]) -> list[bool]:
  batch = getattr(verifier, "verify_batch", None)
  if callable(batch):
    out = [bool(v) for v in batch(list(pairs))]
    if len(out) != len(pairs):
      raise ValueError(f"verify_batch returned {len(out)} results for {len(pairs)} rationales")
    return out
  return [bool(verifier.verify(ex, r)) for ex, r in pairs]


class ReaderVerifier:
  """Accepts a rationale when `predict` reaches the gold answer from question + rationale.

  `predict` maps a batch of input texts to output texts, e.g. a student checkpoint trained on the
  Sci-CoT answer task, whose inputs these are ("Question: ... Explanation: R Answer:", with R's
  closing answer statement removed so the reader cannot just copy it). Outputs are read with
  `parse_answer`.
  """

  def __init__(self, predict: Callable[[Sequence[str]], Sequence[str]]):
    self.predict = predict

  @staticmethod
  def input_text(example: Example, rationale: Rationale) -> str:
    return student_prompts.scicot_answer_inputs(example.question, example.choices,
                                                rationale.rationale)

  def verify_batch(self, pairs: Sequence[tuple[Example, Rationale]]) -> list[bool]:
    outputs = self.predict([self.input_text(ex, r) for ex, r in pairs])
    return [parse_answer(o, ex.choices) == ex.answer for o, (ex, _) in zip(outputs, pairs)]

  def verify(self, example: Example, rationale: Rationale) -> bool:
    return self.verify_batch([(example, rationale)])[0]


def load_verifier(spec: str, options: Mapping[str, str] | None = None) -> Verifier:
  """Builds the verifier `module.path:factory`, calling factory(**options)."""
  module_name, sep, attr = spec.partition(":")
  if not sep or not module_name or not attr:
    raise ValueError(f"verifier must be given as 'module.path:factory', got {spec!r}")
  factory = getattr(importlib.import_module(module_name), attr)
  verifier = factory(**dict(options or {}))
  if not isinstance(verifier, Verifier):
    raise TypeError(f"{spec} built {type(verifier).__name__}, which has no verify(example, "
                    "rationale) method")
  return verifier


@dataclasses.dataclass
class FilterReport:
  samples: int = 0  # teacher samples considered
  empty: int = 0  # no text at all (refusals, filtered content)
  unparsed: int = 0  # no answer could be read
  wrong_answer: int = 0
  verified: int = 0  # rationales shown to the verifier
  verifier_rejected: int = 0
  over_cap: int = 0  # good rationales beyond max_per_example
  kept: int = 0
  examples: int = 0
  examples_without_rationale: int = 0

  @property
  def verifier_filtered_share(self) -> float | None:
    return self.verifier_rejected / self.verified if self.verified else None

  def as_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    share = self.verifier_filtered_share
    out["verifier_filtered_share"] = None if share is None else round(share, 4)
    return out


def to_rationales(example: Example, samples: Iterable[tuple[int, str]], teacher: str,
                  sampling: Mapping[str, Any], report: FilterReport) -> list[Rationale]:
  """Raw (sample index, text) pairs as Rationales with their parsed answers; empties dropped."""
  out = []
  for sample, text in samples:
    report.samples += 1
    text = (text or "").strip()
    if not text:
      report.empty += 1
      continue
    out.append(Rationale(example.id, sample, text, parse_answer(text, example.choices), teacher,
                         dict(sampling)))
  return out


def select(rationales: Sequence[Rationale], examples: Sequence[Example], *,
           max_per_example: int | None = None, verifier: Verifier | None = None,
           report: FilterReport | None = None) -> tuple[list[Rationale], FilterReport]:
  """Answer filter, optional verifier, cap: the rationales to keep, in example order."""
  report = report or FilterReport()
  by_id = {ex.id: ex for ex in examples}
  for r in rationales:
    if r.answer is None:
      report.unparsed += 1
    elif r.id in by_id and r.answer != by_id[r.id].answer:
      report.wrong_answer += 1
  good = filter_rationales(rationales, by_id)
  if verifier is not None and good:
    verdicts = verify_all(verifier, [(by_id[r.id], r) for r in good])
    report.verified += len(good)
    report.verifier_rejected += verdicts.count(False)
    good = [r for r, ok in zip(good, verdicts) if ok]
  groups: dict[str, list[Rationale]] = {}
  for r in good:
    groups.setdefault(r.id, []).append(r)
  kept: list[Rationale] = []
  for ex in examples:
    group = sorted(groups.get(ex.id, []), key=lambda r: r.sample)
    cap = len(group) if max_per_example is None else max_per_example
    kept += group[:cap]
    report.over_cap += len(group) - len(group[:cap])
    report.examples += 1
    report.examples_without_rationale += not group[:cap]
  report.kept += len(kept)
  return kept, report
