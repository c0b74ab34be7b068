"""The reranker's optimizer: AdamW with a larger step for the freshly initialised head.

The encoder starts from pretrained weights and wants a fine-tuning rate (~1e-5); the compressor
(or cross-encoder head) starts from scratch and, at that rate, barely moves in a CPU-sized run.
`head_multiplier` scales the head's rate; bind it as the trainer's optimizer:
    train_script.train.optimizer = @optim.adamw_with_head()   (note the call: a factory)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from kard_jax.training import optimizers

HEADS = ("compressor", "head")


def _labels(params: Any) -> Any:
  return {k: jax.tree.map(lambda _: "head" if k in HEADS else "encoder", v)
          for k, v in params.items()}


def adamw_with_head(head_multiplier: float = 30.0, weight_decay: float = 0.01,
                    max_grad_norm: float | None = 1.0
                    ) -> Callable[[optax.ScalarOrSchedule], optax.GradientTransformation]:
  """A trainer `optimizer`: called with the learning rate (or schedule), returns the transform."""

  def make(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    if callable(learning_rate):
      head_rate = lambda step: head_multiplier * learning_rate(step)  # noqa: E731
    else:
      head_rate = head_multiplier * learning_rate
    tx = optax.multi_transform(
        {"encoder": optimizers.adamw(learning_rate, weight_decay=weight_decay),
         "head": optimizers.adamw(head_rate, weight_decay=weight_decay)}, _labels)
    if max_grad_norm is None or max_grad_norm <= 0:
      return tx
    return optax.chain(optax.clip_by_global_norm(float(max_grad_norm)), tx)

  return make
