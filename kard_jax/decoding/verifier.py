"""A student checkpoint as the teacher's rationale verifier (`kard_jax.teacher.filtering.Verifier`).

The student is a Sci-CoT stage-2 reader: it reads the question with a rationale whose closing answer
statement was removed (`prompts.scicot_answer_inputs`) and answers. A rationale passes when the
reader, decoding greedily, reaches the gold answer from it, which removes rationales that name the
right answer without supporting it. From the command line:
  kard teach ... --verifier kard_jax.decoding.verifier:StudentVerifier \
      --verifier_arg model_dir=RUN --verifier_arg vocab_file=DATA/B/spiece.model
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kard_jax.data import prompts
from kard_jax.data.answers import parse_answer
from kard_jax.data.example import Example
from kard_jax.data.rationale import Rationale
from kard_jax.decoding import adapters
from kard_jax.decoding.predictor import Predictor


class StudentVerifier:
  """Accepts a rationale when the stage-2 student, reading it, answers with the gold label.

  Options arrive as strings when named on the command line, so numbers are converted here.
  `max_input_length` truncates long inputs (keeping EOS); `max_decode_length` bounds the answer;
  `mesh_shape` is the (data, model) mesh ("-1,1": every device on `data`).
  """

  def __init__(self, model_dir: str, vocab_file: str, extra_ids: int | str = 0,
               batch_size: int | str = 16, max_input_length: int | str | None = None,
               max_decode_length: int | str = 16, mesh_shape: str | Sequence[int] = "-1,1"):
    from kard_jax.data import vocab as vocab_lib
    from kard_jax.training import partitioning

    self.vocabulary = vocab_lib.load_vocab(vocab_file, int(extra_ids))
    self.max_input_length = None if max_input_length in (None, "") else int(max_input_length)
    config = adapters.DecodeConfig(method="greedy", max_new_tokens=int(max_decode_length))
    if isinstance(mesh_shape, str):
      mesh_shape = [int(s) for s in mesh_shape.split(",")]
    self.predictor = Predictor(model_dir, config, batch_size=int(batch_size),
                               mesh=partitioning.create_mesh(mesh_shape))

  @staticmethod
  def input_text(example: Example, rationale: Rationale) -> str:
    return prompts.scicot_answer_inputs(example.question, example.choices, rationale.rationale)

  def _tokens(self, text: str) -> np.ndarray:
    ids = list(self.vocabulary.encode(text))
    if self.max_input_length is not None:
      ids = ids[:self.max_input_length - 1]
    return np.asarray(ids + [adapters.decode_lib.EOS_ID], np.int32)

  def answers(self, pairs: Sequence[tuple[Example, Rationale]]) -> list[str | None]:
    """The label the student reads from each (example, rationale), or None if it names none."""
    if not pairs:
      return []
    inputs = [self._tokens(self.input_text(ex, r)) for ex, r in pairs]
    outputs = self.predictor.predict(inputs)
    texts = [self.vocabulary.decode(o.sequences()[0]) for o in outputs]
    return [parse_answer(t, ex.choices) for t, (ex, _) in zip(texts, pairs)]

  def verify_batch(self, pairs: Sequence[tuple[Example, Rationale]]) -> list[bool]:
    return [a == ex.answer for a, (ex, _) in zip(self.answers(pairs), pairs)]

  def verify(self, example: Example, rationale: Rationale) -> bool:
    return self.verify_batch([(example, rationale)])[0]
