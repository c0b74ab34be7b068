"""An OpenAI-compatible HTTP client that survives hours of flaky endpoints.

Speaks the `/chat/completions` and `/completions` protocol that OpenAI, vLLM, llama.cpp and most
proxies share, with the standard library only (no SDK whose retry policy we cannot see). One call
asks for `n` samples of one prompt. What can go wrong is sorted two ways:

  transient  429, 408, 409, 425, 5xx, timeouts, reset/dropped connections, truncated or malformed
             JSON: retried with exponential backoff and full jitter, never sooner than the server's
             `Retry-After` (seconds or an HTTP date; also `retry-after-ms`). A 429 pauses every
             worker, since rate limits are per account, not per connection.
  permanent  what retrying will not heal: a refused connection, an unknown host, a TLS failure,
             any other 4xx (400, 401, 403, 404, 422: a bad key, model, URL or request) and a 200
             whose body is not JSON at all (an HTML page: the URL is not the API). The call fails
             at once, without retries; after `max_permanent_errors` of them in a row (no success
             between) every later call would most likely fail the same way, so `FatalError` stops
             the run with one line naming the URL, the status and the start of the body.
A call that is still transient after `max_retries` retries fails with `CallFailed`.

Time: `timeout_s` bounds each socket operation and `deadline_s` a whole attempt, so a server that
trickles its answer a byte at a time is cut at the deadline. Concurrency: with
`set_max_in_flight(k)` at most k attempts are open at the server. An attempt given up on (timeout,
deadline) keeps its slot until the server closes the connection (the client half-closes it, which
tells most servers to stop), at most `deadline_s` more; only then can a retry take the slot, so a
hanging server never sees more than k requests at once.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import io
import json
import random
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Callable, Mapping

from kard_jax.teacher.limits import RateLimiter

RETRY_STATUS = frozenset({408, 409, 425, 429})
_SNIPPET = 160  # characters of a response body quoted in an error


class CallFailed(Exception):
  """A call without a usable response: `kind` says why, `attempts` how hard we tried."""

  def __init__(self, kind: str, message: str, attempts: int):
    super().__init__(f"{kind}: {message} (after {attempts} attempt(s))")
    self.kind, self.message, self.attempts = kind, message, attempts


class FatalError(Exception):
  """Permanent errors in a row (wrong URL, bad key, unknown model): stop the run; one line."""


class _Cancelled(Exception):
  pass


class _Transient(Exception):
  def __init__(self, kind: str, message: str, retry_after: float | None = None):
    super().__init__(message)
    self.kind, self.message, self.retry_after = kind, message, retry_after


class _Permanent(Exception):
  """An error retrying will not heal; `message` is one line naming the URL and the cause."""

  def __init__(self, kind: str, message: str):
    super().__init__(message)
    self.kind, self.message = kind, message


class _DeadlineExceeded(TimeoutError):
  pass


def _snippet(body: bytes) -> str:
  text = " ".join(body[:4 * _SNIPPET].decode("utf-8", "replace").split())
  return repr(text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else ""))


def classify_connection_error(error: BaseException) -> tuple[str, str] | None:
  """(kind, cause) when a failure to talk to the server will not heal by retrying, else None."""
  if isinstance(error, ConnectionRefusedError):
    return "refused", "connection refused (nothing listens there)"
  if isinstance(error, socket.gaierror):
    if error.errno == socket.EAI_AGAIN:  # the resolver is unreachable for now
      return None
    return "dns", f"cannot resolve the host ({error})"
  if isinstance(error, ssl.SSLError) and not isinstance(
      error, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLWantReadError,
              ssl.SSLWantWriteError, ssl.SSLSyscallError)):
    return "tls", f"TLS error ({error})"
  return None


def _looks_like_json(body: bytes) -> bool:
  """Whether a body is JSON, or the start of it (a truncated answer is transient, HTML is not)."""
  head = body.lstrip()[:1]
  return head in (b"{", b"[")


@dataclasses.dataclass(frozen=True)
class ClientConfig:
  """Where to send calls and how patiently. Defaults suit a paid API over hours."""
  base_url: str
  model: str
  api_key: str | None = None
  mode: str = "chat"  # "chat" (/chat/completions) or "completions" (/completions)
  timeout_s: float = 120.0  # per socket operation: connect, send, each read
  deadline_s: float | None = None  # per attempt, start to last byte (None: 3 x timeout_s)
  max_retries: int = 8
  max_permanent_errors: int = 3  # permanent errors in a row that stop the run (FatalError)
  backoff_base_s: float = 1.0
  max_backoff_s: float = 60.0  # cap on one exponential-backoff sleep
  max_retry_after_s: float = 600.0  # cap on how long a server's Retry-After can make us wait
  rpm: float | None = None  # requests per minute (None: unlimited)
  tpm: float | None = None  # prompt + completion tokens per minute (None: unlimited)
  headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.mode not in ("chat", "completions"):
      raise ValueError(f"mode must be 'chat' or 'completions', got {self.mode!r}")
    for name in ("timeout_s", "deadline_s"):
      value = getattr(self, name)
      if value is not None and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if self.max_retries < 0 or self.max_permanent_errors < 1:
      raise ValueError("max_retries must be >= 0 and max_permanent_errors >= 1")

  @property
  def attempt_deadline_s(self) -> float:
    return self.deadline_s if self.deadline_s is not None else 3.0 * self.timeout_s


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


class _DeadlineReader(io.RawIOBase):
  """The response stream of a `_Connection`: each read waits at most what the attempt has left."""

  def __init__(self, conn: "_Connection", sock: socket.socket):
    super().__init__()
    self._conn, self._sock = conn, sock

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    self._conn.arm(self._sock)
    try:
      return self._sock.recv_into(buffer)
    except TimeoutError:
      self._conn.check_deadline()
      raise


class _DeadlineSocket:
  """A connected socket whose sends and reads (through `makefile`) respect the attempt deadline."""

  def __init__(self, conn: "_Connection", sock: socket.socket):
    self._conn, self.raw = conn, sock

  def makefile(self, mode: str = "rb", *args, **kwargs):
    del args, kwargs
    if "b" not in mode or "w" in mode:
      raise ValueError(f"unsupported mode {mode!r}")  # http.client only reads bytes
    return io.BufferedReader(_DeadlineReader(self._conn, self.raw))

  def sendall(self, data) -> None:
    self._conn.arm(self.raw)
    try:
      self.raw.sendall(data)
    except TimeoutError:
      self._conn.check_deadline()
      raise

  def __getattr__(self, name: str):
    return getattr(self.raw, name)


class _Connection:
  """Mixed into http.client's connections: a per-attempt deadline on top of the socket timeout."""
  deadline: float | None = None  # time.monotonic() by which the attempt must be over
  per_operation_s: float = 60.0

  def arm(self, sock: socket.socket) -> None:
    left = self.check_deadline()
    sock.settimeout(self.per_operation_s if left is None else min(self.per_operation_s, left))

  def check_deadline(self) -> float | None:
    """Seconds the attempt has left (None: no deadline); raises once they are spent."""
    if self.deadline is None:
      return None
    left = self.deadline - time.monotonic()
    if left <= 0:
      raise _DeadlineExceeded("the attempt's deadline passed")
    return left

  def connect(self) -> None:
    left = self.check_deadline()
    self.timeout = self.per_operation_s if left is None else min(self.per_operation_s, left)
    super().connect()  # type: ignore[misc]
    self.sock = _DeadlineSocket(self, self.sock)

  def detach(self) -> socket.socket | None:
    """Takes the socket away (the connection forgets it) for draining; None if not connected."""
    sock = self.sock
    self.sock = None
    self.close()  # type: ignore[attr-defined]
    return sock.raw if isinstance(sock, _DeadlineSocket) else sock


class _HTTPConnection(_Connection, http.client.HTTPConnection):
  pass


class _HTTPSConnection(_Connection, http.client.HTTPSConnection):
  pass


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
    self._slots: threading.Semaphore | None = None  # attempts open at the server
    self._permanent_lock = threading.Lock()
    self._permanent_in_a_row = 0
    self.last_permanent: str | None = None  # the last permanent error's one-line cause
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

  def set_max_in_flight(self, count: int) -> None:
    """At most `count` attempts open at the server at once, abandoned ones included."""
    if count < 1:
      raise ValueError(f"max_in_flight must be >= 1, got {count}")
    self._slots = threading.Semaphore(count)

  def complete(self, payload: Mapping[str, Any], n: int, *,
               seed: int | None = None) -> Completion:
    """Asks for `n` samples of `payload` (messages or prompt + sampling settings).

    Returns when a response parses; raises CallFailed when retries are spent or the error is
    permanent, FatalError when permanent errors keep coming (no call can succeed).
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
      except _Permanent as e:
        self.stats.error(e.kind)
        self.stats.add(failures=1)
        with self._permanent_lock:
          self._permanent_in_a_row += 1
          self.last_permanent = e.message
          stop = self._permanent_in_a_row >= self.config.max_permanent_errors
          count = self._permanent_in_a_row
        if stop:
          raise FatalError(f"{count} permanent error(s) in a row, the last: {e.message} (check "
                           "--base_url, --model and the API key variable)") from None
        raise CallFailed(e.kind, e.message, attempts) from None
      except _Cancelled:
        raise CallFailed("cancelled", "the run is stopping", attempts) from None
      with self._permanent_lock:
        self._permanent_in_a_row = 0
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

  # -- the in-flight bound ------------------------------------------------------------------------
  def _take_slot(self) -> None:
    if self._slots is None:
      return
    while not self._slots.acquire(timeout=0.05):
      if self._cancelled.is_set():
        raise _Cancelled()

  def _give_slot(self) -> None:
    if self._slots is not None:
      self._slots.release()

  def _abandon(self) -> None:
    """Gives up this thread's connection mid-attempt; its slot is freed once the server is done.

    The socket is half-closed (a FIN: most servers stop work for a client that went away) and
    read until the server closes it, or for `deadline_s` at most, on a daemon thread.
    """
    conn = getattr(self._local, "conn", None)
    self._local.conn = None
    sock = conn.detach() if conn is not None else None
    if sock is None:
      self._give_slot()
      return
    threading.Thread(target=self._drain, args=(sock,), daemon=True,
                     name="teacher-drain").start()

  def _drain(self, sock: socket.socket) -> None:
    try:
      until = time.monotonic() + self.config.attempt_deadline_s
      try:
        sock.shutdown(socket.SHUT_WR)
      except OSError:
        pass
      while (left := until - time.monotonic()) > 0:
        sock.settimeout(min(left, 1.0))
        try:
          if not sock.recv(65536):
            break  # the server closed its side: it has let the request go
        except TimeoutError:
          continue
    except OSError:
      pass  # reset or closed: the request is over at the server
    finally:
      try:
        sock.close()
      finally:
        self._give_slot()

  # -- one attempt --------------------------------------------------------------------------------
  def _connection(self) -> _Connection:
    conn = getattr(self._local, "conn", None)
    if conn is None:
      cls = _HTTPSConnection if self._scheme == "https" else _HTTPConnection
      conn = cls(self._host, self._port, timeout=self.config.timeout_s)
      conn.per_operation_s = self.config.timeout_s
      self._local.conn = conn
    return conn

  def _drop_connection(self) -> None:
    conn = getattr(self._local, "conn", None)
    self._local.conn = None
    if conn is not None:
      conn.close()

  def _post(self, data: bytes) -> tuple[list[str], list[str | None], int, int]:
    self._take_slot()
    status, body, response_headers = self._exchange(data)  # on errors it frees or hands the slot
    self._give_slot()
    return self._interpret(status, body, response_headers)

  def _exchange(self, data: bytes) -> tuple[int, bytes, http.client.HTTPMessage]:
    """One request and its whole response, within the deadline; frees or hands on the slot."""
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               **self.config.headers}
    if self.config.api_key:
      headers["Authorization"] = f"Bearer {self.config.api_key}"
    try:
      conn = self._connection()
      conn.deadline = time.monotonic() + self.config.attempt_deadline_s
      conn.request("POST", self._path, body=data, headers=headers)
      response = conn.getresponse()
      status, body = response.status, response.read()
      response_headers = response.headers
      if response.will_close:
        self._drop_connection()
      return status, body, response_headers
    except TimeoutError as e:
      self._abandon()
      if isinstance(e, _DeadlineExceeded):
        raise _Transient("deadline", f"{self.url}: no complete answer within the "
                         f"{self.config.attempt_deadline_s:g}s deadline") from None
      raise _Transient("timeout", f"{self.url}: no answer within {self.config.timeout_s:g}s "
                       f"({e})") from None
    except (OSError, http.client.HTTPException) as e:
      # Refused, reset or dropped connections; truncated bodies (IncompleteRead); garbage status.
      self._drop_connection()
      self._give_slot()
      permanent = classify_connection_error(e)
      if permanent is not None:
        raise _Permanent(permanent[0], f"{self.url}: {permanent[1]}") from None
      raise _Transient("connection", f"{self.url}: {type(e).__name__}: {e}") from None
    except BaseException:
      self._drop_connection()
      self._give_slot()
      raise

  def _interpret(self, status: int, body: bytes, headers: http.client.HTTPMessage
                 ) -> tuple[list[str], list[str | None], int, int]:
    if status == 200:
      if not _looks_like_json(body):
        kind = headers.get("Content-Type", "no Content-Type")
        raise _Permanent("not_json", f"{self.url} answered HTTP 200 with a body that is not JSON "
                         f"({kind}): {_snippet(body)}")
      return parse_response(body, self.config.mode)
    if status in RETRY_STATUS or status >= 500:
      raise _Transient(f"http_{status}", f"{self.url} answered HTTP {status}: {_snippet(body)}",
                       parse_retry_after(headers))
    raise _Permanent(f"http_{status}", f"{self.url} answered HTTP {status}: {_snippet(body)}")
