"""Dynamic batching: requests that arrive within a short window decode together.

One worker thread owns the decoder. It waits for a first job, then for up to `window_s` more
(or until `max_batch` jobs of the same mode are waiting), and decodes those jobs as one batch.
Jobs of the other mode wait for the next round. A job cancelled before its batch starts (its
client went away) is dropped without being decoded: its slot goes to the next job. With
`max_batch=1` (or `window_s=0` and one job at a time) this is an unbatched server.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any, Callable, Sequence

DecodeFn = Callable[[str, Sequence[Any]], Sequence[Any]]


@dataclasses.dataclass(eq=False)
class Job:
  """One input to decode in `mode`; `result` or `error` is set when `done` is."""
  mode: str
  tokens: Any
  submitted: float = dataclasses.field(default_factory=time.perf_counter)
  started: float = 0.0
  finished: float = 0.0
  batch_size: int = 0
  result: Any = None
  error: BaseException | None = None
  cancelled: bool = False
  done: threading.Event = dataclasses.field(default_factory=threading.Event)

  def cancel(self) -> None:
    self.cancelled = True


class Batcher:
  """Collects jobs into batches of one mode and runs `decode(mode, [tokens...])` on them."""

  def __init__(self, decode: DecodeFn, *, max_batch: int, window_s: float):
    if max_batch < 1:
      raise ValueError("max_batch must be >= 1")
    self.decode, self.max_batch, self.window_s = decode, int(max_batch), float(window_s)
    self._queue: collections.deque[Job] = collections.deque()
    self._cond = threading.Condition()
    self._stopped = False
    self.stats = {"batches": 0, "decoded": 0, "dropped_cancelled": 0, "max_batch_seen": 0}
    self._thread = threading.Thread(target=self._loop, name="kard-batcher", daemon=True)
    self._thread.start()

  def submit(self, mode: str, tokens: Any) -> Job:
    job = Job(mode, tokens)
    with self._cond:
      if self._stopped:
        raise RuntimeError("the batcher is stopped")
      self._queue.append(job)
      self._cond.notify_all()
    return job

  def pending(self) -> int:
    with self._cond:
      return len(self._queue)

  def stop(self) -> None:
    with self._cond:
      self._stopped = True
      self._cond.notify_all()
    self._thread.join(timeout=10)

  def _take(self) -> list[Job]:
    """Waits for jobs; returns the next batch (one mode, live jobs only, at most max_batch)."""
    with self._cond:
      while True:
        self._drop_cancelled()
        if self._queue or self._stopped:
          break
        self._cond.wait()
      if self._stopped:
        return []
      mode = self._queue[0].mode
      deadline = self._queue[0].submitted + self.window_s
      while not self._stopped:
        self._drop_cancelled()
        same = sum(j.mode == mode for j in self._queue)
        left = deadline - time.perf_counter()
        if same >= self.max_batch or left <= 0 or not same:
          break
        self._cond.wait(left)
      batch, rest = [], collections.deque()
      for job in self._queue:
        (batch if job.mode == mode and len(batch) < self.max_batch else rest).append(job)
      self._queue = rest
      return batch

  def _drop_cancelled(self) -> None:
    live = collections.deque(j for j in self._queue if not j.cancelled)
    for job in self._queue:
      if job.cancelled:
        self.stats["dropped_cancelled"] += 1
        job.done.set()
    self._queue = live

  def _loop(self) -> None:
    while True:
      batch = self._take()
      if not batch:
        if self._stopped:
          return
        continue
      start = time.perf_counter()
      for job in batch:
        job.started, job.batch_size = start, len(batch)
      try:
        results = self.decode(batch[0].mode, [j.tokens for j in batch])
        for job, result in zip(batch, results):
          job.result = result
      except BaseException as e:  # pylint: disable=broad-except
        for job in batch:
          job.error = e
      end = time.perf_counter()
      self.stats["batches"] += 1
      self.stats["decoded"] += len(batch)
      self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], len(batch))
      for job in batch:
        job.finished = end
        job.done.set()
