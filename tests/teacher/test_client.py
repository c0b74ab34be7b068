"""The OpenAI-compatible client: response parsing, Retry-After, backoff and error classes."""

import email.utils
import http.server
import json
import random
import threading
import time

import pytest

from kard_jax.teacher import client as client_lib
from kard_jax.teacher.client import CallFailed, Client, ClientConfig, FatalError
from kard_jax.teacher.limits import RateLimiter


class FakeTime:
  """A clock that only moves when someone sleeps: backoff is checked without waiting for it."""

  def __init__(self):
    self.now = 1000.0
    self.sleeps = []

  def clock(self):
    return self.now

  def sleep(self, seconds):
    self.sleeps.append(seconds)
    self.now += seconds


class Scripted:
  """A local server answering each POST with the next (status, headers, body) of a script."""

  def __init__(self, script):
    self.script, self.bodies, self.headers = list(script), [], []
    outer = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def log_message(self, *args):
        pass

      def do_POST(self):
        outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        outer.headers.append(dict(self.headers))
        status, headers, body = outer.script.pop(0)
        if status is None:  # drop the connection
          self.close_connection = True
          return
        if status == "hang":  # answer nothing until well past the client's timeout
          time.sleep(0.6)
          self.close_connection = True
          return
        self.send_response(status)
        for k, v in headers.items():
          self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

  def close(self):
    self.server.shutdown()
    self.server.server_close()


def chat_body(*texts, usage=(7, 5)):
  return json.dumps({"choices": [{"index": i, "message": {"role": "assistant", "content": t},
                                  "finish_reason": "stop"} for i, t in enumerate(texts)],
                     "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}}).encode()


def make_client(url, fake_time, **overrides):
  settings = dict(max_retries=3, backoff_base_s=1.0, max_backoff_s=8.0, timeout_s=5.0)
  settings.update(overrides)
  limiter = RateLimiter(clock=fake_time.clock, sleep=fake_time.sleep)
  return Client(ClientConfig(url, "m", **settings), sleep=fake_time.sleep, limiter=limiter,
                rng=random.Random(0))


@pytest.fixture
def scripted():
  servers = []

  def start(script):
    servers.append(Scripted(script))
    return servers[-1]

  yield start
  for s in servers:
    s.close()


def test_parse_retry_after_forms():
  assert client_lib.parse_retry_after({"Retry-After": "3"}) == 3.0
  assert client_lib.parse_retry_after({"retry-after": "0.25"}) == 0.25
  assert client_lib.parse_retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
  date = email.utils.formatdate(1_000_120.0, usegmt=True)
  assert client_lib.parse_retry_after({"Retry-After": date}, now=1_000_100.0) == 20.0
  assert client_lib.parse_retry_after({"Retry-After": date}, now=1_000_200.0) == 0.0
  assert client_lib.parse_retry_after({"Retry-After": "soon"}) is None
  assert client_lib.parse_retry_after({}) is None


def test_parse_response_chat_and_completions():
  texts, reasons, p, c = client_lib.parse_response(
      json.dumps({"choices": [{"index": 1, "message": {"content": "b"}, "finish_reason": "length"},
                              {"index": 0, "message": {"content": None}}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode(), "chat")
  assert texts == ["", "b"] and reasons == [None, "length"] and (p, c) == (3, 4)
  texts, _, p, c = client_lib.parse_response(b'{"choices": [{"text": " x"}]}', "completions")
  assert texts == [" x"] and (p, c) == (0, 0)


@pytest.mark.parametrize("body,mode", [
    (b'{"choices": [{"message": {"content": "a"', "chat"),  # truncated
    (b"[1, 2]", "chat"),
    (b'{"choices": []}', "chat"),
    (b'{"choices": [{"text": "a"}]}', "chat"),  # completions shape on the chat endpoint
    (b'{"choices": [{"message": {"content": "a"}}]}', "completions"),
    (b'{"choices": [{"message": {"content": 5}}]}', "chat"),
    (b"\xff\xfe", "chat"),
])
def test_malformed_responses_are_transient(body, mode):
  with pytest.raises(client_lib._Transient) as e:
    client_lib.parse_response(body, mode)
  assert e.value.kind == "bad_response"


def test_request_carries_model_n_seed_and_key(scripted):
  server = scripted([(200, {}, chat_body("one", "two"))])
  t = FakeTime()
  c = Client(ClientConfig(server.url, "gpt-x", api_key="sk-test"), sleep=t.sleep,
             limiter=RateLimiter(clock=t.clock, sleep=t.sleep))
  got = c.complete({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}, 2,
                   seed=7)
  assert got.texts == ("one", "two") and got.attempts == 1
  assert (got.prompt_tokens, got.completion_tokens) == (7, 5)
  body = server.bodies[0]
  assert (body["model"], body["n"], body["seed"], body["temperature"]) == ("gpt-x", 2, 7, 0.5)
  assert server.headers[0]["Authorization"] == "Bearer sk-test"
  assert c.url.endswith("/v1/chat/completions")
  assert c.stats.as_dict()["calls"] == 1


def test_429_waits_at_least_retry_after_and_pauses_everyone(scripted):
  server = scripted([(429, {"Retry-After": "30"}, b"slow down"), (200, {}, chat_body("ok"))])
  t = FakeTime()
  c = make_client(server.url, t)
  got = c.complete({"messages": []}, 1)
  assert got.texts == ("ok",) and got.attempts == 2
  assert max(t.sleeps) >= 30.0  # not the jittered 0-1 s backoff
  stats = c.stats.as_dict()
  assert stats["retries"] == 1 and stats["errors"] == {"http_429": 1}


def test_retry_after_is_capped(scripted):
  server = scripted([(503, {"Retry-After": "5000"}, b""), (200, {}, chat_body("ok"))])
  t = FakeTime()
  make_client(server.url, t, max_retry_after_s=12.0).complete({"messages": []}, 1)
  assert max(t.sleeps) == pytest.approx(12.0)


def test_backoff_is_full_jitter_within_the_exponential_cap():
  c = Client(ClientConfig("http://127.0.0.1:9/v1", "m", backoff_base_s=0.5, max_backoff_s=3.0),
             rng=random.Random(1))
  for attempt in range(1, 8):
    cap = min(3.0, 0.5 * 2 ** (attempt - 1))
    delays = [c._backoff(attempt, None) for _ in range(200)]
    assert 0.0 <= min(delays) and max(delays) <= cap
    assert max(delays) > 0.8 * cap and min(delays) < 0.2 * cap  # spread over the whole range
  assert c._backoff(1, 2.0) >= 2.0


def test_retries_then_fails_without_raising_anything_else(scripted):
  server = scripted([(500, {}, b"err"), (None, {}, b""), (200, {}, b'{"choices": [{"mess'),
                     (200, {}, b'{"object": "chat.completion"}')])
  t = FakeTime()
  c = make_client(server.url, t, max_retries=3)
  with pytest.raises(CallFailed) as e:
    c.complete({"messages": []}, 1)
  assert e.value.attempts == 4 and e.value.kind == "bad_response"
  stats = c.stats.as_dict()
  assert stats["calls"] == 4 and stats["retries"] == 3 and stats["failures"] == 1
  assert stats["errors"] == {"http_500": 1, "connection": 1, "bad_response": 2}
  assert len(t.sleeps) == 3


def test_client_timeout_is_retried(scripted):
  server = scripted([("hang", {}, b""), (200, {}, chat_body("ok"))])
  t = FakeTime()
  c = make_client(server.url, t, timeout_s=0.2)
  got = c.complete({"messages": []}, 1)
  assert got.texts == ("ok",) and got.attempts == 2
  assert c.stats.as_dict()["errors"] == {"timeout": 1}


def test_permanent_errors_fail_at_once_and_stop_the_run_when_they_keep_coming(scripted):
  server = scripted([(401, {}, b'{"error": "bad key"}'), (200, {}, chat_body("ok")),
                     (400, {}, b'{"error":\n "too long"}'), (404, {}, b"no such model"),
                     (422, {}, b"unprocessable")])
  t = FakeTime()
  c = make_client(server.url, t, max_permanent_errors=3)
  with pytest.raises(CallFailed) as e:
    c.complete({"messages": []}, 1)
  assert e.value.kind == "http_401" and e.value.attempts == 1 and not t.sleeps
  assert c.complete({"messages": []}, 1).texts == ("ok",)  # a success resets the count
  for kind in ("http_400", "http_404"):
    with pytest.raises(CallFailed) as e:
      c.complete({"messages": []}, 1)
    assert e.value.kind == kind and e.value.attempts == 1
  with pytest.raises(FatalError) as fatal:
    c.complete({"messages": []}, 1)
  message = str(fatal.value)
  assert "3 permanent error(s) in a row" in message and "HTTP 422" in message
  assert server.url + "/chat/completions" in message and "'unprocessable'" in message
  assert "\n" not in message and not t.sleeps  # one line, and no retry was ever made
  assert len(server.bodies) == 5
  assert c.stats.as_dict()["retries"] == 0


def test_bad_config_is_rejected():
  with pytest.raises(ValueError, match="mode"):
    ClientConfig("http://x/v1", "m", mode="embeddings")
  with pytest.raises(ValueError, match="http"):
    Client(ClientConfig("localhost:8000", "m"))


def test_cancel_cuts_a_long_retry_after_short(scripted):
  server = scripted([(429, {"Retry-After": "60"}, b"")])
  c = Client(ClientConfig(server.url, "m"))
  timer = threading.Timer(0.2, c.cancel)
  timer.start()
  started = time.monotonic()
  with pytest.raises(CallFailed) as e:
    c.complete({"messages": []}, 1)
  assert e.value.kind == "cancelled" and time.monotonic() - started < 5.0
  assert c.stats.as_dict()["failures"] == 0
