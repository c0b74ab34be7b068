"""What T5X gin files need from us beyond `import tasks` (see gin_configs/t5x/).

T5X refuses to train when the model's vocabulary differs from the task's ("Model and Task
vocabularies do not match"), and seqio compares vocabularies by their constructor arguments,
including the exact file path string. Binding the model's `VOCABULARY` to the task's own
vocabulary object makes the two equal by construction, wherever the prepared data lives.
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
