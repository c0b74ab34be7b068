"""Training and evaluation metrics: TensorBoard summaries (clu.metric_writers) and a progress bar.

Only process 0 writes files; other hosts log to nothing. The bar shows step, loss, target tokens per
second and the learning rate; tqdm adds the ETA.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Mapping, Sequence

import jax
import numpy as np
from clu import metric_writers
from tqdm import tqdm

from kard_jax.training import models as models_lib


def average_step_metrics(host_metrics: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
  """Mean over steps of each metric; counts (`num_*`) are summed instead."""
  out = {}
  for name in host_metrics[0]:
    values = np.asarray([float(m[name]) for m in host_metrics])
    if models_lib.is_count_metric(name):
      out[name] = float(values.sum())
    else:
      out[name] = float(values.mean())
  return out


class MetricsLogger:
  """Writes `model_dir/train` and `model_dir/eval` summaries and drives the progress bar."""

  def __init__(self, model_dir: str, total_steps: int, initial_step: int,
               show_progress: bool = True):
    lead = jax.process_index() == 0
    self._model_dir, self._lead = model_dir, lead
    self._train = self._writer("train")
    self._eval = None  # created on the first evaluation
    self._bar = tqdm(total=total_steps, initial=initial_step, desc="train", unit="step",
                     file=sys.stderr, dynamic_ncols=True, disable=not (lead and show_progress))
    self._last_time = time.perf_counter()
    self.last_train: dict[str, float] = {}

  def _writer(self, name: str):
    return metric_writers.create_default_writer(
        os.path.join(self._model_dir, name), just_logging=not self._lead, asynchronous=True)

  def step_done(self) -> None:
    self._bar.update(1)

  def write_train(self, step: int, host_metrics: Sequence[Mapping[str, np.ndarray]]) -> None:
    now = time.perf_counter()
    elapsed = max(now - self._last_time, 1e-9)
    self._last_time = now
    scalars = average_step_metrics(host_metrics)
    scalars.pop("nonfinite", None)
    tokens = scalars.get("num_target_tokens")
    if tokens is not None:
      scalars["target_tokens_per_second"] = tokens / elapsed
    scalars["steps_per_second"] = len(host_metrics) / elapsed
    self._train.write_scalars(step, scalars)
    self.last_train = scalars
    postfix = {"loss": f"{scalars.get('loss', float('nan')):.4f}"}
    if tokens is not None:
      postfix["tok/s"] = f"{scalars['target_tokens_per_second']:.0f}"
    if "learning_rate" in scalars:
      postfix["lr"] = f"{scalars['learning_rate']:.2e}"
    self._bar.set_postfix(postfix, refresh=False)

  def write_eval(self, step: int, scalars: Mapping[str, float]) -> None:
    if self._eval is None:
      self._eval = self._writer("eval")
    self._eval.write_scalars(step, dict(scalars))
    self._bar.write(f"eval step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in
                                                      sorted(scalars.items())))

  def write_text(self, step: int, name: str, text: str) -> None:
    self._train.write_texts(step, {name: text})

  def reset_timer(self) -> None:
    """Excludes time spent outside training (evaluation, saving) from throughput."""
    self._last_time = time.perf_counter()

  def close(self) -> None:
    self._bar.close()
    for writer in (self._train, self._eval):
      if writer is not None:
        writer.flush()
        writer.close()
