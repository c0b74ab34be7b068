"""Requests- and tokens-per-minute limits shared by all worker threads.

Two token buckets, each holding at most one minute's allowance and refilling continuously. A call
takes one request and its estimated tokens before it is sent; when the response reports the real
usage the difference is settled (a bucket may go negative, so later calls wait for the overdraft).
`pause` stops everyone until a moment (a 429's Retry-After), because a provider's limit is per
account: one worker hitting it means all of them would.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class RateLimiter:

  def __init__(self, rpm: float | None = None, tpm: float | None = None, *,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep):
    for name, value in (("rpm", rpm), ("tpm", tpm)):
      if value is not None and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    self.rpm, self.tpm = rpm, tpm
    self._clock, self._sleep = clock, sleep
    self._lock = threading.Lock()
    now = clock()
    self._last = now
    self._requests = float(rpm or 0.0)  # buckets start full
    self._tokens = float(tpm or 0.0)
    self._paused_until = now
    self.waited_s = 0.0  # total time callers spent waiting here, for the summary

  def _refill(self, now: float) -> None:
    dt = max(0.0, now - self._last)
    self._last = now
    if self.rpm:
      self._requests = min(self.rpm, self._requests + dt * self.rpm / 60.0)
    if self.tpm:
      self._tokens = min(self.tpm, self._tokens + dt * self.tpm / 60.0)

  def _wait_needed(self, now: float, tokens: float) -> float:
    wait = self._paused_until - now
    if self.rpm and self._requests < 1.0:
      wait = max(wait, (1.0 - self._requests) * 60.0 / self.rpm)
    if self.tpm:
      need = min(tokens, self.tpm)  # a call larger than a minute's budget waits for a full bucket
      if self._tokens < need:
        wait = max(wait, (need - self._tokens) * 60.0 / self.tpm)
    return wait

  def acquire(self, tokens: float = 0.0) -> None:
    """Blocks until one request of about `tokens` tokens may be sent, then takes it."""
    while True:
      with self._lock:
        now = self._clock()
        self._refill(now)
        wait = self._wait_needed(now, tokens)
        if wait <= 0.0:
          if self.rpm:
            self._requests -= 1.0
          if self.tpm:
            self._tokens -= tokens
          return
        self.waited_s += wait
      self._sleep(wait)

  def settle(self, estimated: float, actual: float) -> None:
    """Corrects the token bucket once a response reports its real usage."""
    if self.tpm and actual > 0:
      with self._lock:
        self._tokens -= actual - estimated

  def pause(self, seconds: float) -> None:
    """Holds every caller of `acquire` for `seconds` from now (extends, never shortens)."""
    with self._lock:
      self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))
