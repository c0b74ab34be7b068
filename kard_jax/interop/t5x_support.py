"""What T5X gin files need from us beyond `import tasks` (see gin_configs/t5x/).

T5X refuses to train when the model's vocabulary differs from the task's ("Model and Task
vocabularies do not match"), and seqio compares vocabularies by their constructor arguments,
including the exact file path string. Binding the model's `VOCABULARY` to the task's own
vocabulary object makes the two equal by construction, wherever the prepared data lives; the
file and extra ids of that vocabulary feed any other `seqio.SentencePieceVocabulary` a gin makes.
"""

from __future__ import annotations


def task_vocabulary(mixture_or_task_name: str, feature: str = "targets"):
  """The vocabulary of `feature` in a registered SeqIO task or mixture (for `VOCABULARY = @...()`)."""
  import seqio  # pylint: disable=import-outside-toplevel

  task = seqio.get_mixture_or_task(mixture_or_task_name)
  features = task.output_features
  if feature not in features:
    raise ValueError(f"{mixture_or_task_name} has no feature {feature!r} (has {sorted(features)})")
  return features[feature].vocabulary


def task_vocabulary_file(mixture_or_task_name: str) -> str:
  """The SentencePiece model file of the task's vocabulary (DATA/<benchmark>/spiece.model)."""
  return task_vocabulary(mixture_or_task_name).sentencepiece_model_file


def task_vocabulary_extra_ids(mixture_or_task_name: str) -> int:
  """The extra ids (sentinels) of the task's vocabulary: 0 for ours, 100 for T5's."""
  return task_vocabulary(mixture_or_task_name).extra_ids
