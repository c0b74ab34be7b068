"""A local stand-in for an OpenAI-compatible endpoint that misbehaves on purpose.

It answers `/v1/chat/completions` and `/v1/completions` like the real API (`choices[i].message
.content` or `choices[i].text`, `usage`), deterministically: the text of sample s of an example
depends only on (example, s). The example is found from the question in the prompt's last block;
the sample index from the request's `seed` (the teacher sends seed + first sample index), so
choice i of a request with seed S is sample S - seed_base + i.

Faults are deterministic too. Each request is keyed by (example, first sample, n); the k-th
attempt at a key fails while k < faults(key), where faults(key) is 0, 1, 2 or 3 from a hash, and
the kind of failure also comes from the hash and k:
  429       with Retry-After in seconds ("0.05") or as an HTTP date (one second ahead)
  500 / 503 an error page
  hang      reads the request, then sleeps past the client's timeout and closes without a word
  truncated a 200 whose JSON body is cut in half (Content-Length matches what is sent)
  cut       a 200 that promises more bytes than it sends, then closes
  drop      closes the connection without answering
  fields    a 200 with valid JSON but no `choices`
Some successful answers hold fewer choices than asked, like servers that ignore `n`.

`always=KIND` answers every request with one behaviour instead: a fault above, or
  html      a 200 whose body is an HTML page (a URL that is a web UI, not the API)
  trickle   a 200 with a valid answer sent one byte every `trickle_s` seconds
`active` / `max_active` count the requests the server is working on (from the request line to
the end of the handler), i.e. the concurrency the server really sees.
"""

from __future__ import annotations

import collections
import email.utils
import http.server
import json
import sys
import threading
import time
import zlib
from typing import Sequence

from kard_jax.data.example import Choice, Example

FAULTS = ("429", "500", "hang", "truncated", "drop", "fields", "429_date", "cut", "503")


def _hash(*parts) -> int:
  return zlib.crc32("|".join(map(str, parts)).encode())


def make_examples(count: int, prefix: str = "q") -> list[Example]:
  """Small 4-choice examples with distinct questions, gold answers cycling through A-D."""
  colours = ("red", "blue", "green", "amber")
  return [Example(f"{prefix}{i:03d}", f"Which colour is marker {prefix}{i}?",
                  tuple(Choice("ABCD"[k], c) for k, c in enumerate(colours)), "ABCD"[i % 4])
          for i in range(count)]


class _Server(http.server.ThreadingHTTPServer):
  daemon_threads = True

  def handle_error(self, request, client_address):
    # A client that gave up (timeout) or was killed leaves a broken pipe: expected here.
    if not isinstance(sys.exc_info()[1], ConnectionError):
      super().handle_error(request, client_address)


def sample_text(example: Example, sample: int) -> str:
  """The deterministic rationale for (example, sample): mostly right, some wrong, some unsure.

  Sample 0 is always right, so every example keeps at least one rationale.
  """
  kind = 0 if sample == 0 else _hash(example.id, sample) % 5
  labels = example.labels
  if kind == 4:
    return f"Thinking about {example.question!r} (take {sample}), I cannot decide."
  label = example.answer if kind < 3 else labels[(labels.index(example.answer) + 1) % len(labels)]
  choice = next(c for c in example.choices if c.label == label)
  return (f"Take {sample} on {example.id}: the facts point one way.\n"
          f"So, the answer is ({label}) {choice.text}.")


class FakeOpenAI:
  """Start with `start()`; `base_url` then points at it. Thread-safe counters record traffic."""

  def __init__(self, examples: Sequence[Example], *, fault_rate_levels: int = 4,
               hang_s: float = 0.6, delay_s: float = 0.0, seed_base: int = 0,
               faults: bool = True, always: str | None = None, trickle_s: float = 0.05):
    self.by_question = {ex.question.strip(): ex for ex in examples}
    self.fault_rate_levels = fault_rate_levels
    self.hang_s, self.delay_s, self.seed_base, self.faults = hang_s, delay_s, seed_base, faults
    self.always, self.trickle_s = always, trickle_s
    self.active = self.max_active = 0
    self.lock = threading.Lock()
    self.attempts: collections.Counter = collections.Counter()  # request key -> attempts
    self.served: collections.Counter = collections.Counter()  # (example id, sample) -> answers
    self.fault_counts: collections.Counter = collections.Counter()  # fault kind -> times
    self.requests = 0
    self.log: list[tuple[str, tuple[int, ...]]] = []  # (example id, samples asked) per request
    self.paths: collections.Counter = collections.Counter()
    self._server: http.server.ThreadingHTTPServer | None = None

  # -- lifecycle --------------------------------------------------------------------------------
  def start(self) -> "FakeOpenAI":
    fake = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def log_message(self, *args):  # keep test output clean
        pass

      def do_POST(self):
        fake.handle(self)

    self._server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return self

  def stop(self) -> None:
    if self._server is not None:
      self._server.shutdown()
      self._server.server_close()

  @property
  def base_url(self) -> str:
    host, port = self._server.server_address[:2]
    return f"http://{host}:{port}/v1"

  def __enter__(self) -> "FakeOpenAI":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

  # -- protocol ---------------------------------------------------------------------------------
  def _example(self, body: dict) -> Example:
    if "messages" in body:
      text = body["messages"][-1]["content"]
    else:
      text = body["prompt"]
    block = text[text.rindex("Question: ") + len("Question: "):]
    return self.by_question[block.split("\nAnswer choices:", 1)[0].strip()]

  def _fault(self, key: tuple, attempt: int) -> str | None:
    if not self.faults:
      return None
    h = _hash(*key)
    if attempt >= h % self.fault_rate_levels:
      return None
    return FAULTS[(h // 7 + attempt) % len(FAULTS)]

  def handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
    with self.lock:
      self.active += 1
      self.max_active = max(self.max_active, self.active)
    try:
      self._handle(req)
    finally:
      with self.lock:
        self.active -= 1

  def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
    length = int(req.headers.get("Content-Length", 0))
    body = json.loads(req.rfile.read(length))
    mode = "chat" if req.path.endswith("/chat/completions") else "completions"
    example = self._example(body)
    first = int(body.get("seed", self.seed_base)) - self.seed_base
    n = int(body.get("n", 1))
    key = (example.id, first, n)
    with self.lock:
      self.requests += 1
      self.log.append((example.id, tuple(range(first, first + n))))
      self.paths[req.path] += 1
      attempt = self.attempts[key]
      self.attempts[key] += 1
    if self.always is None:
      fault = self._fault(key, attempt)
    else:
      fault = None if self.always == "trickle" else self.always
    if fault is not None:
      with self.lock:
        self.fault_counts[fault] += 1
      return self._send_fault(req, fault)
    # Some keys get fewer choices than asked, like servers that ignore `n`.
    count = n if _hash("short", *key) % 4 else max(1, n - 1)
    samples = list(range(first, first + count))
    choices = []
    for i, s in enumerate(samples):
      text = sample_text(example, s)
      choice = {"index": i, "finish_reason": "stop", "logprobs": None}
      if mode == "chat":
        choice["message"] = {"role": "assistant", "content": text}
      else:
        choice["text"] = " " + text
      choices.append(choice)
    payload = json.dumps({
        "id": f"cmpl-{example.id}-{first}", "object": "chat.completion" if mode == "chat"
        else "text_completion", "created": 0, "model": body.get("model"), "choices": choices,
        "usage": {"prompt_tokens": 100, "completion_tokens": 20 * count,
                  "total_tokens": 100 + 20 * count}}).encode()
    if self.delay_s:
      time.sleep(self.delay_s)
    if self.always == "trickle":
      return self._trickle(req, payload)
    self._send(req, 200, payload)
    with self.lock:
      for s in samples:
        self.served[(example.id, s)] += 1

  @staticmethod
  def _send(req, status: int, payload: bytes, headers: dict | None = None,
            length: int | None = None) -> None:
    req.send_response(status)
    req.send_header("Content-Type", "application/json")
    req.send_header("Content-Length", str(len(payload) if length is None else length))
    for k, v in (headers or {}).items():
      req.send_header(k, v)
    req.end_headers()
    req.wfile.write(payload)
    req.wfile.flush()

  def _trickle(self, req, payload: bytes) -> None:
    req.send_response(200)
    req.send_header("Content-Type", "application/json")
    req.send_header("Content-Length", str(len(payload)))
    req.end_headers()
    req.wfile.flush()
    for i in range(len(payload)):
      req.wfile.write(payload[i:i + 1])
      req.wfile.flush()
      time.sleep(self.trickle_s)

  def _send_fault(self, req, fault: str) -> None:
    error = json.dumps({"error": {"message": f"injected {fault}", "type": fault}}).encode()
    if fault == "429":
      self._send(req, 429, error, {"Retry-After": "0.05"})
    elif fault == "429_date":
      when = email.utils.formatdate(time.time() + 1, usegmt=True)
      self._send(req, 429, error, {"Retry-After": when})
    elif fault in ("500", "503"):
      self._send(req, int(fault), b"<html>upstream error</html>")
    elif fault == "hang":
      time.sleep(self.hang_s)
      req.close_connection = True
    elif fault == "drop":
      req.close_connection = True
    elif fault == "truncated":
      good = json.dumps({"choices": [{"index": 0, "text": "x" * 50}]}).encode()
      self._send(req, 200, good[:len(good) // 2])
    elif fault == "cut":
      good = json.dumps({"choices": [{"index": 0, "text": "x" * 50}]}).encode()
      self._send(req, 200, good[:len(good) // 2], length=len(good))
      req.close_connection = True
    elif fault == "html":
      page = b"<!doctype html>\n<html><head><title>Sign in</title></head><body>Welcome</body></html>"
      req.send_response(200)
      req.send_header("Content-Type", "text/html; charset=utf-8")
      req.send_header("Content-Length", str(len(page)))
      req.end_headers()
      req.wfile.write(page)
    elif fault == "fields":
      self._send(req, 200, json.dumps({"id": "x", "object": "chat.completion"}).encode())
    else:
      raise AssertionError(fault)
