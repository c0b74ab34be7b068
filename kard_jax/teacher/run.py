"""The teacher stage: examples -> prompts -> calls -> journal -> filtered rationale file.

  plan      for each example, the prompt's request hash and the samples the journal lacks, grouped
            into requests of consecutive sample indices (`samples_per_request` at most each);
  collect   those requests on `max_in_flight` threads, with at most `max_in_flight` attempts open
            at the server (see client.py); every finished call goes into the journal before
            anything else happens, so a crash at any point loses at most calls in flight; a run
            of permanent errors (wrong URL, bad key) stops the collection at once (FatalError);
  finish    samples 0..n-1 of every example are read back from the journal (this run's and earlier
            runs'), parsed, filtered and written atomically.
A server that returns fewer choices than asked (llama.cpp ignores `n`) gets follow-up requests for
the rest. With `seed` set, the request for samples [s, s+k) carries seed + s, so endpoints that
honour seeds draw the same samples whether or not the run was interrupted.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import uuid
from concurrent import futures
from typing import Any, Iterator, Sequence

import tqdm

from kard_jax.data.example import Example
from kard_jax.data.rationale import Rationale, write_rationales
from kard_jax.teacher import filtering
from kard_jax.teacher.client import CallFailed, Client
from kard_jax.teacher.journal import Journal
from kard_jax.teacher.prompts import PromptBuilder, Sampling, request_hash


@dataclasses.dataclass(frozen=True)
class TeachConfig:
  n: int = 10  # samples per example
  samples_per_request: int | None = None  # None: all of an example's samples in one request
  max_in_flight: int = 8
  seed: int | None = None
  max_per_example: int | None = None
  progress: bool = True

  def __post_init__(self):
    if self.n < 1 or self.max_in_flight < 1:
      raise ValueError("n and max_in_flight must be >= 1")
    if self.samples_per_request is not None and self.samples_per_request < 1:
      raise ValueError("samples_per_request must be >= 1")
    if self.max_per_example is not None and self.max_per_example < 1:
      raise ValueError("max_per_example must be >= 1")


@dataclasses.dataclass(frozen=True)
class Job:
  example: Example
  prompt_hash: str
  samples: tuple[int, ...]  # consecutive sample indices


def _runs(indices: Sequence[int], size: int) -> Iterator[tuple[int, ...]]:
  """Splits sorted indices into runs of consecutive values, at most `size` long."""
  run: list[int] = []
  for i in indices:
    if run and (i != run[-1] + 1 or len(run) == size):
      yield tuple(run)
      run = []
    run.append(i)
  if run:
    yield tuple(run)


def plan(examples: Sequence[Example], hashes: Sequence[str], journal: Journal,
         config: TeachConfig) -> tuple[list[Job], int]:
  """The requests still to make, and how many samples the journal already holds."""
  size = config.samples_per_request or config.n
  jobs, cached = [], 0
  for ex, h in zip(examples, hashes):
    done = journal.done(ex.id, h)
    missing = [s for s in range(config.n) if s not in done]
    cached += config.n - len(missing)
    jobs += [Job(ex, h, run) for run in _runs(missing, size)]
  return jobs, cached


class _Collector:
  """Runs jobs on a thread pool; records each finished call in the journal at once."""

  def __init__(self, client: Client, builder: PromptBuilder, sampling: Sampling,
               journal: Journal, config: TeachConfig, total: int):
    self.client, self.builder, self.sampling = client, builder, sampling
    self.journal, self.config = journal, config
    self.stop = threading.Event()
    self.fatal: BaseException | None = None
    self.requests = self.received = self.failed_samples = 0
    self._lock = threading.Lock()
    self.bar = tqdm.tqdm(total=total, unit="sample", desc="teacher", file=sys.stderr,
                         disable=not config.progress, dynamic_ncols=True)

  def _entries(self, job: Job, samples: Sequence[int], completion) -> list[dict[str, Any]]:
    call = uuid.uuid4().hex
    now = round(time.time(), 3)
    out = []
    for k, (s, text, reason) in enumerate(zip(samples, completion.texts,
                                              completion.finish_reasons)):
      usage = ({"prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens} if k == 0 else None)
      out.append({"id": job.example.id, "prompt_hash": job.prompt_hash, "sample": s,
                  "text": text, "finish_reason": reason, "model": self.client.config.model,
                  "call": call, "attempts": completion.attempts, "usage": usage, "time": now})
    return out

  def run_job(self, job: Job) -> None:
    payload = self.builder.payload(job.example, self.sampling)
    remaining = list(job.samples)
    while remaining and not self.stop.is_set():
      seed = None if self.config.seed is None else self.config.seed + remaining[0]
      with self._lock:
        self.requests += 1
      try:
        completion = self.client.complete(payload, len(remaining), seed=seed)
      except CallFailed as e:
        if e.kind == "cancelled":
          return
        self.journal.record_failure({"id": job.example.id, "prompt_hash": job.prompt_hash,
                                     "samples": remaining, "failure": str(e),
                                     "attempts": e.attempts, "time": round(time.time(), 3)})
        with self._lock:
          self.failed_samples += len(remaining)
        return
      got = remaining[:len(completion.texts)]
      fresh = self.journal.append(self._entries(job, got, completion))
      remaining = remaining[len(got):]
      with self._lock:
        self.received += fresh
        stats = self.client.stats
        self.bar.set_postfix(retries=stats.retries, failures=stats.failures, refresh=False)
        self.bar.update(fresh)

  def _done(self, future: futures.Future, slots: threading.Semaphore) -> None:
    slots.release()
    error = future.exception() if not future.cancelled() else None
    if error is not None and self.fatal is None:
      self.fatal = error
      self.stop.set()
      self.client.cancel()

  def run(self, jobs: Sequence[Job]) -> None:
    workers = self.config.max_in_flight
    slots = threading.Semaphore(2 * workers)  # bounds queued prompts, not just running ones
    pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher")
    try:
      for job in jobs:
        slots.acquire()
        if self.stop.is_set():
          break
        future = pool.submit(self.run_job, job)
        future.add_done_callback(lambda f: self._done(f, slots))
      pool.shutdown(wait=True)
    except BaseException:  # Ctrl-C: stop queueing and waiting; calls under way still land
      self.stop.set()
      self.client.cancel()
      pool.shutdown(wait=True, cancel_futures=True)
      raise
    finally:
      self.bar.close()
    if self.fatal is not None:
      raise self.fatal


def journal_rationales(examples: Sequence[Example], hashes: Sequence[str], journal: Journal,
                       n: int, teacher: str, sampling: dict[str, Any],
                       report: filtering.FilterReport) -> list[Rationale]:
  out = []
  for ex, h in zip(examples, hashes):
    done = journal.done(ex.id, h)
    pairs = [(s, done[s]["text"]) for s in range(n) if s in done]
    out += filtering.to_rationales(ex, pairs, teacher, sampling, report)
  return out


def teach(examples: Sequence[Example], *, client: Client, builder: PromptBuilder,
          sampling: Sampling, journal: Journal, config: TeachConfig, out_path,
          verifier: filtering.Verifier | None = None) -> dict[str, Any]:
  """Collects what the journal lacks, then writes the filtered rationales; returns the summary."""
  model, mode = client.config.model, client.config.mode
  hashes = [request_hash(builder.payload(ex, sampling), model, mode) for ex in examples]
  jobs, cached = plan(examples, hashes, journal, config)
  client.set_max_in_flight(config.max_in_flight)  # abandoned attempts count until closed
  started = time.monotonic()
  collector = _Collector(client, builder, sampling, journal, config,
                         total=config.n * len(examples) - cached)
  collector.run(jobs)
  record = {**sampling.as_dict(), "n": config.n, "mode": mode, "give_answer": builder.give_answer}
  if config.seed is not None:
    record["seed"] = config.seed
  report = filtering.FilterReport()
  raw = journal_rationales(examples, hashes, journal, config.n, model, record, report)
  kept, report = filtering.select(raw, examples, max_per_example=config.max_per_example,
                                  verifier=verifier, report=report)
  write_rationales(out_path, kept)
  summary = {"examples": len(examples), "samples_wanted": config.n * len(examples),
             "samples_cached": cached, "samples_new": collector.received,
             "samples_missing": config.n * len(examples) - cached - collector.received,
             "samples_failed": collector.failed_samples,
             "requests": collector.requests, **client.stats.as_dict(),
             "rate_limit_wait_s": round(client.limiter.waited_s, 2),
             "seconds": round(time.monotonic() - started, 2)}
  summary.update(report.as_dict())
  summary["out"] = str(out_path)
  return summary


def write_selected(examples: Sequence[Example], rationales: Sequence[Rationale], out_path, *,
                   max_per_example: int | None = None,
                   verifier: filtering.Verifier | None = None) -> dict[str, Any]:
  """Filters rationales from elsewhere (offline teacher, imports) the same way, and writes them."""
  report = filtering.FilterReport(samples=len(rationales))
  kept, report = filtering.select(rationales, examples, max_per_example=max_per_example,
                                  verifier=verifier, report=report)
  write_rationales(out_path, kept)
  return {**report.as_dict(), "out": str(out_path)}
