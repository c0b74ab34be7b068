"""Requests- and tokens-per-minute buckets, checked on a clock that moves only when slept on."""

import pytest

from kard_jax.teacher.limits import RateLimiter
from tests.teacher.test_client import FakeTime


def test_requests_per_minute():
  t = FakeTime()
  limiter = RateLimiter(rpm=120, clock=t.clock, sleep=t.sleep)
  for _ in range(120):  # a full bucket: one minute's allowance at once
    limiter.acquire()
  assert t.sleeps == []
  for _ in range(10):
    limiter.acquire()
  assert sum(t.sleeps) == pytest.approx(10 * 0.5)  # then one every 60/120 s


def test_tokens_per_minute_and_settling_actual_usage():
  t = FakeTime()
  limiter = RateLimiter(tpm=6000, clock=t.clock, sleep=t.sleep)
  limiter.acquire(6000)
  assert t.sleeps == []
  limiter.acquire(1000)  # 1000 tokens refill in 10 s
  assert sum(t.sleeps) == pytest.approx(10.0)
  limiter.settle(estimated=1000, actual=2000)  # the call used more than estimated: overdraft
  start = sum(t.sleeps)
  limiter.acquire(1000)
  assert sum(t.sleeps) - start == pytest.approx(20.0)


def test_a_call_larger_than_a_minute_waits_for_a_full_bucket():
  t = FakeTime()
  limiter = RateLimiter(tpm=100, clock=t.clock, sleep=t.sleep)
  limiter.acquire(50)
  limiter.acquire(10_000)
  assert sum(t.sleeps) == pytest.approx(30.0)


def test_pause_holds_every_caller_and_only_extends():
  t = FakeTime()
  limiter = RateLimiter(clock=t.clock, sleep=t.sleep)
  limiter.pause(5.0)
  limiter.pause(2.0)
  limiter.acquire()
  assert sum(t.sleeps) == pytest.approx(5.0)
  limiter.acquire()
  assert sum(t.sleeps) == pytest.approx(5.0)


def test_unlimited_never_waits_and_bad_limits_are_rejected():
  t = FakeTime()
  limiter = RateLimiter(clock=t.clock, sleep=t.sleep)
  for _ in range(1000):
    limiter.acquire(10**6)
  assert t.sleeps == []
  with pytest.raises(ValueError):
    RateLimiter(rpm=0)
