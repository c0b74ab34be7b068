"""An OpenAI-compatible HTTP client that survives hours of flaky endpoints.

Speaks the `/chat/completions` and `/completions` protocol that OpenAI, vLLM, llama.cpp and most
proxies share, with the standard library only (no SDK whose retry policy we cannot see). One call
asks for `n` samples of one prompt. What can go wrong is sorted three ways:

  transient  429, 408, 409, 425, 5xx, timeouts, refused/reset/dropped connections, truncated or
             malformed bodies: retried with exponential backoff and full jitter, never sooner than
             the server's `Retry-After` (seconds or an HTTP date; also `retry-after-ms`). A 429
             pauses every worker, since rate limits are per account, not per connection.
  permanent  other 4xx (e.g. a prompt over the context length): this call fails, the run goes on.
  fatal      401, 403, 404 (bad key, no access, wrong model or URL): every call would fail the same
             way, so the run stops and says why.
A call that is still transient after `max_retries` retries fails with `CallFailed`; nothing here
ever raises anything else for a bad response.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import json
import random
import threading
import time
import urllib.parse
from typing import Any, Callable, Mapping

from kard_jax.teacher.limits import RateLimiter

RETRY_STATUS = frozenset({408, 409, 425, 429})
FATAL_STATUS = frozenset({401, 403, 404})


class CallFailed(Exception):
  """A call without a usable response: `kind` says why, `attempts` how hard we tried."""

  def __init__(self, kind: str, message: str, attempts: int):
    super().__init__(f"{kind}: {message} (after {attempts} attempt(s))")
    self.kind, self.message, self.attempts = kind, message, attempts


class FatalError(Exception):
  """An answer that every later call would get too (bad key, unknown model): stop the run."""


class _Cancelled(Exception):
  pass


class _Transient(Exception):
  def __init__(self, kind: str, message: str, retry_after: float | None = None):
    super().__init__(message)
    self.kind, self.message, self.retry_after = kind, message, retry_after


@dataclasses.dataclass(frozen=True)
class ClientConfig:
  """Where to send calls and how patiently. Defaults suit a paid API over hours."""
  base_url: str
  model: str
  api_key: str | None = None
  mode: str = "chat"  # "chat" (/chat/completions) or "completions" (/completions)
  timeout_s: float = 120.0  # per socket operation: connect, send, each read
  max_retries: int = 8
  backoff_base_s: float = 1.0
  max_backoff_s: float = 60.0  # cap on one exponential-backoff sleep
  max_retry_after_s: float = 600.0  # cap on how long a server's Retry-After can make us wait
  rpm: float | None = None  # requests per minute (None: unlimited)
  tpm: float | None = None  # prompt + completion tokens per minute (None: unlimited)
  headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.mode not in ("chat", "completions"):
      raise ValueError(f"mode must be 'chat' or 'completions', got {self.mode!r}")


@dataclasses.dataclass(frozen=True)
class Completion:
  """The usable part of one successful call."""
  texts: tuple[str, ...]  # one per returned choice, in `index` order
  finish_reasons: tuple[str | None, ...]
  prompt_tokens: int
  completion_tokens: int
  attempts: int


class ClientStats:
  """Thread-safe counters for the end-of-run summary."""

  def __init__(self):
    self._lock = threading.Lock()
    self.calls = 0  # HTTP attempts, successful or not
    self.retries = 0
    self.failures = 0
    self.prompt_tokens = 0
    self.completion_tokens = 0
    self.errors: dict[str, int] = {}  # kind -> count, over all attempts

  def add(self, **deltas: int) -> None:
    with self._lock:
      for k, v in deltas.items():
        setattr(self, k, getattr(self, k) + v)

  def error(self, kind: str) -> None:
    with self._lock:
      self.errors[kind] = self.errors.get(kind, 0) + 1

  def as_dict(self) -> dict[str, Any]:
    with self._lock:
      return {"calls": self.calls, "retries": self.retries, "failures": self.failures,
              "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
              "errors": dict(sorted(self.errors.items()))}


def parse_retry_after(headers: Mapping[str, str] | http.client.HTTPMessage,
                      now: float | None = None) -> float | None:
  """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
  lowered = {k.lower(): v for k, v in headers.items()}
  get = lowered.get
  ms = get("retry-after-ms")
  if ms:
    try:
      return max(0.0, float(ms) / 1000.0)
    except ValueError:
      pass
  value = get("retry-after")
  if not value:
    return None
  value = value.strip()
  try:
    return max(0.0, float(value))
  except ValueError:
    pass
  try:
    when = email.utils.parsedate_to_datetime(value)
  except (TypeError, ValueError):
    return None
  if when is None:
    return None
  return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_response(body: bytes, mode: str) -> tuple[list[str], list[str | None], int, int]:
  """(texts, finish_reasons, prompt_tokens, completion_tokens), or _Transient('bad_response')."""
  try:
    obj = json.loads(body)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise _Transient("bad_response", f"response is not valid JSON ({e})") from None
  if not isinstance(obj, dict):
    raise _Transient("bad_response", "response is not a JSON object")
  choices = obj.get("choices")
  if not isinstance(choices, list) or not choices:
    raise _Transient("bad_response", "response has no 'choices'")
  items = []
  for i, c in enumerate(choices):
    if not isinstance(c, dict):
      raise _Transient("bad_response", f"choices[{i}] is not an object")
    if mode == "chat":
      message = c.get("message")
      if not isinstance(message, dict) or "content" not in message:
        raise _Transient("bad_response", f"choices[{i}] has no message.content")
      text = message["content"]
    else:
      if "text" not in c:
        raise _Transient("bad_response", f"choices[{i}] has no text")
      text = c["text"]
    if text is None:
      text = ""  # a refusal or filtered sample: kept as empty, dropped by the filter
    if not isinstance(text, str):
      raise _Transient("bad_response", f"choices[{i}] text is not a string")
    index = c.get("index", i)
    items.append((index if isinstance(index, int) else i, text, c.get("finish_reason")))
  items.sort(key=lambda t: t[0])
  usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
  tokens = [usage.get(k) for k in ("prompt_tokens", "completion_tokens")]
  tokens = [t if isinstance(t, int) else 0 for t in tokens]
  return [t[1] for t in items], [t[2] for t in items], tokens[0], tokens[1]


class Client:
  """Sends one call at a time per thread; share one Client across worker threads."""

  def __init__(self, config: ClientConfig, *, stats: ClientStats | None = None,
               limiter: RateLimiter | None = None,
               sleep: Callable[[float], object] | None = None, rng: random.Random | None = None):
    self.config = config
    self.stats = stats or ClientStats()
    self._cancelled = threading.Event()
    self._sleep = sleep or self._wait
    self.limiter = limiter or RateLimiter(config.rpm, config.tpm, sleep=self._sleep)
    self._rng = rng or random.Random()
    self._rng_lock = threading.Lock()
    self._local = threading.local()  # one keep-alive connection per worker thread
    url = urllib.parse.urlsplit(config.base_url.rstrip("/"))
    if url.scheme not in ("http", "https") or not url.hostname:
      raise ValueError(f"base_url must be an http(s) URL, got {config.base_url!r}")
    self._scheme, self._host, self._port = url.scheme, url.hostname, url.port
    endpoint = "chat/completions" if config.mode == "chat" else "completions"
    self._path = f"{url.path.rstrip('/')}/{endpoint}"

  @property
  def url(self) -> str:
    port = f":{self._port}" if self._port else ""
    return f"{self._scheme}://{self._host}{port}{self._path}"

  def complete(self, payload: Mapping[str, Any], n: int, *,
               seed: int | None = None) -> Completion:
    """Asks for `n` samples of `payload` (messages or prompt + sampling settings).

    Returns when a response parses; raises CallFailed when retries are spent or the error is
    permanent, FatalError when no call can succeed.
    """
    body = dict(payload, model=self.config.model, n=n)
    if seed is not None:
      body["seed"] = seed
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    estimate = len(data) // 4 + int(body.get("max_tokens") or 256) * n
    attempts = 0
    while True:
      try:
        self.limiter.acquire(estimate)
      except _Cancelled:
        pass
      if self._cancelled.is_set():
        raise CallFailed("cancelled", "the run is stopping", attempts)
      attempts += 1
      self.stats.add(calls=1)
      try:
        texts, reasons, prompt_tokens, completion_tokens = self._post(data)
      except _Transient as e:
        self.stats.error(e.kind)
        if e.retry_after is not None and e.kind == "http_429":
          self.limiter.pause(min(e.retry_after, self.config.max_retry_after_s))
        if attempts > self.config.max_retries:
          self.stats.add(failures=1)
          raise CallFailed(e.kind, e.message, attempts) from None
        self.stats.add(retries=1)
        try:
          self._sleep(self._backoff(attempts, e.retry_after))
        except _Cancelled:
          pass
        continue
      except CallFailed as e:
        self.stats.add(failures=1)
        raise CallFailed(e.kind, e.message, attempts) from None
      self.limiter.settle(estimate, prompt_tokens + completion_tokens)
      self.stats.add(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
      return Completion(tuple(texts), tuple(reasons), prompt_tokens, completion_tokens, attempts)

  def _wait(self, seconds: float) -> None:
    """time.sleep that `cancel` cuts short (a Retry-After may ask for minutes)."""
    if self._cancelled.wait(seconds):
      raise _Cancelled()

  def cancel(self) -> None:
    """Makes waiting and future calls give up (CallFailed 'cancelled'); calls under way finish."""
    self._cancelled.set()

  def _backoff(self, attempt: int, retry_after: float | None) -> float:
    """Full jitter (uniform in [0, min(cap, base * 2^(attempt-1))]), at least Retry-After."""
    c = self.config
    with self._rng_lock:
      delay = self._rng.uniform(0.0, min(c.max_backoff_s, c.backoff_base_s * 2 ** (attempt - 1)))
    if retry_after is not None:
      delay = max(delay, min(retry_after, c.max_retry_after_s))
    return delay

  def _connection(self) -> http.client.HTTPConnection:
    conn = getattr(self._local, "conn", None)
    if conn is None:
      cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
      conn = cls(self._host, self._port, timeout=self.config.timeout_s)
      self._local.conn = conn
    return conn

  def _drop_connection(self) -> None:
    conn = getattr(self._local, "conn", None)
    self._local.conn = None
    if conn is not None:
      conn.close()

  def _post(self, data: bytes) -> tuple[list[str], list[str | None], int, int]:
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               **self.config.headers}
    if self.config.api_key:
      headers["Authorization"] = f"Bearer {self.config.api_key}"
    try:
      conn = self._connection()
      conn.request("POST", self._path, body=data, headers=headers)
      response = conn.getresponse()
      status, body = response.status, response.read()
      response_headers = response.headers
      if response.will_close:
        self._drop_connection()
    except TimeoutError as e:
      self._drop_connection()
      raise _Transient("timeout", f"no answer within {self.config.timeout_s}s ({e})") from None
    except (OSError, http.client.HTTPException) as e:
      # Refused, reset or dropped connections; truncated bodies (IncompleteRead); garbage status.
      self._drop_connection()
      raise _Transient("connection", f"{type(e).__name__}: {e}") from None
    if status == 200:
      return parse_response(body, self.config.mode)
    detail = body[:300].decode("utf-8", "replace").strip()
    if status in RETRY_STATUS or status >= 500:
      raise _Transient(f"http_{status}", f"HTTP {status}: {detail}",
                       parse_retry_after(response_headers))
    if status in FATAL_STATUS:
      raise FatalError(f"{self.url} answered HTTP {status}: {detail} (check --base_url, --model "
                       "and the API key variable)")
    raise CallFailed(f"http_{status}", f"HTTP {status}: {detail}", 1)
