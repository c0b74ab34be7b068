"""The methods the pipeline compares, and what each one trains and evaluates.

Every student method is a SeqIO task (see `tasks/`) trained with the method's gin file
`gin_configs/<benchmark>/<method>.gin`, then decoded on the evaluation split:

  teacher        the teacher's own answers on the evaluation split, from stored predictions
                 (few-shot prompting, answer withheld); nothing is trained
  answer_only    fine-tuning: question -> "The answer is C."
  reasoning      reasoning distillation: question -> teacher rationale
  multitask      distilling step-by-step: "[rationale] " q -> rationale and "[answer] " q ->
                 answer, mixed at the gin file's rates (the loss weights); answered with the
                 answer prefix alone at test time
  kard_bm25      KARD: question + passages retrieved with the rationale -> rationale; at test time
                 the passages are BM25's for the question
  kard_rerank    the same student (KARD trains one model), reading the reranker's top passages
  scicot         Sci-CoT, two stages: a rationale model (question -> rationale: the reasoning
                 distillation student) and an answer model reading question + rationale; at test
                 time it reads the rationale stage 1 generated

Self-consistency (several sampled rationales, majority vote) applies to the methods that
generate a rationale before answering (`rationale=True`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Method:
  key: str
  name: str
  train_task: str | None  # task (or mixture) suffix trained on; None: nothing to train
  eval_task: str | None  # task suffix decoded at evaluation
  train_as: str | None = None  # reuse this method's trained student instead of training another
  rationale: bool = False  # decodes a rationale before the answer (self-consistency applies)
  reads: tuple[str, ...] = ()  # evaluation inputs beyond the examples: "question", "reranked"


METHODS: dict[str, Method] = {m.key: m for m in (
    Method("teacher", "Few-shot teacher", None, None),
    Method("answer_only", "Fine-tuning (answer only)", "answer_only", "answer_only"),
    Method("reasoning", "Reasoning distillation", "reasoning", "reasoning", rationale=True),
    Method("multitask", "Distilling step-by-step (multitask)", "multitask", "multitask_answer"),
    Method("kard_bm25", "KARD (BM25)", "kard_bm25", "kard_bm25", rationale=True,
           reads=("question",)),
    Method("kard_rerank", "KARD (reranker)", "kard_rerank", "kard_rerank", train_as="kard_bm25",
           rationale=True, reads=("reranked",)),
    Method("scicot", "Sci-CoT (two-stage)", "scicot_answer", "scicot_answer", rationale=False),
)}

# The teacher row's name when its stored predictions are the synthetic generator's chain of facts:
# an oracle, not a few-shot model (its accuracy is 100% by construction).
ORACLE_NAME = "Oracle (the generator's chain of facts)"

# Sci-CoT's first stage: the reasoning-distillation student generates the rationales.
SCICOT_RATIONALE_FROM = "reasoning"
# Methods plotted against the knowledge-base size.
SWEEP_METHODS = ("answer_only", "reasoning", "kard_bm25")


def get(key: str) -> Method:
  if key not in METHODS:
    raise ValueError(f"unknown method {key!r}; choose from {', '.join(METHODS)}")
  return METHODS[key]


def training_owner(key: str) -> str:
  """The method whose trained student `key` uses (itself unless it shares one)."""
  return get(key).train_as or key
