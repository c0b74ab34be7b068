"""A tiny in-memory SeqIO task for the trainer's tests: reverse a sequence of token ids.

Token ids are used directly (PassThroughVocabulary: pad 0, eos 1), so no tokenizer is trained and
the task costs nothing to build. Importing this module registers `kard_test_reverse`.
"""

from __future__ import annotations

import numpy as np
import seqio
import tensorflow as tf

TASK = "kard_test_reverse"
VOCAB_SIZE = 64
VOCAB = seqio.PassThroughVocabulary(size=VOCAB_SIZE, eos_id=1)
_SIZES = {"train": 96, "validation": 24}


def _examples(split: str) -> dict[str, np.ndarray]:
  rng = np.random.default_rng({"train": 0, "validation": 1}[split])
  n = _SIZES[split]
  lengths = rng.integers(3, 9, size=n)
  inputs = np.zeros((n, 8), np.int32)
  targets = np.zeros((n, 8), np.int32)
  for i, length in enumerate(lengths):
    seq = rng.integers(3, VOCAB_SIZE, size=length)
    inputs[i, :length] = seq
    targets[i, :length] = seq[::-1]
  return {"inputs": inputs, "targets": targets}


def _dataset_fn(split: str, shuffle_files: bool = False,
                seed: int | None = None) -> tf.data.Dataset:
  del shuffle_files, seed  # one in-memory "file"
  data = _examples(split)
  ds = tf.data.Dataset.from_tensor_slices(data)
  # Drop the padding: variable-length examples, as a tokenizer would produce.
  return ds.map(lambda ex: {k: tf.boolean_mask(v, v > 0) for k, v in ex.items()})


def register() -> None:
  if TASK in seqio.TaskRegistry.names():
    return
  seqio.TaskRegistry.add(
      TASK,
      source=seqio.FunctionDataSource(_dataset_fn, splits=("train", "validation")),
      preprocessors=[seqio.preprocessors.append_eos_after_trim],
      output_features={
          "inputs": seqio.Feature(VOCAB, add_eos=True, dtype=tf.int32),
          "targets": seqio.Feature(VOCAB, add_eos=True, dtype=tf.int32),
      })


register()
