"""Failures that will not heal stop the run fast; slow and hanging servers are bounded in time and
in concurrency (issue 14). Every case runs against tests/teacher/fake_openai.py with short timeouts.
"""

import socket
import ssl
import time

import pytest

from kard_jax.teacher import client as client_lib
from kard_jax.teacher import exemplars
from kard_jax.teacher.client import CallFailed, Client, ClientConfig, FatalError
from kard_jax.teacher.journal import Journal
from kard_jax.teacher.prompts import PromptBuilder, Sampling
from kard_jax.teacher.run import TeachConfig, teach
from tests.teacher.fake_openai import FakeOpenAI, make_examples


def _closed_port_url() -> str:
  """A URL where nothing listens (a port the OS just handed out and took back)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/v1"


def _teach(tmp_path, client, examples, **config):
  settings = dict(n=2, seed=0, max_in_flight=4, progress=False)
  settings.update(config)
  with Journal(tmp_path / "journal.jsonl") as journal:
    return teach(examples, client=client, builder=PromptBuilder(exemplars.OBQA),
                 sampling=Sampling(), journal=journal, config=TeachConfig(**settings),
                 out_path=tmp_path / "out.jsonl")


def _patient(url, **overrides):
  """Settings that would retry for minutes if a permanent error were taken for a temporary one."""
  settings = dict(timeout_s=2.0, max_retries=8, backoff_base_s=1.0, max_backoff_s=8.0)
  settings.update(overrides)
  return Client(ClientConfig(url, "fake-teacher", **settings))


def test_connection_refused_stops_the_run_without_retries(tmp_path):
  url = _closed_port_url()
  client = _patient(url)
  started = time.monotonic()
  with pytest.raises(FatalError) as e:
    _teach(tmp_path, client, make_examples(16))
  assert time.monotonic() - started < 5.0
  message = str(e.value)
  assert "connection refused" in message and url in message and "\n" not in message
  stats = client.stats.as_dict()
  assert stats["retries"] == 0 and stats["errors"]["refused"] >= 3
  assert stats["calls"] < 16  # stopped after a few calls, not one per question
  assert not (tmp_path / "out.jsonl").exists()


def test_an_html_page_with_status_200_stops_the_run(tmp_path):
  examples = make_examples(16)
  with FakeOpenAI(examples, always="html") as server:
    client = _patient(server.base_url)
    started = time.monotonic()
    with pytest.raises(FatalError) as e:
      _teach(tmp_path, client, examples)
  assert time.monotonic() - started < 5.0
  message = str(e.value)
  assert "HTTP 200" in message and "not JSON" in message and "text/html" in message
  assert "<!doctype html> <html>" in message and server.base_url in message
  assert "\n" not in message
  assert client.stats.as_dict()["retries"] == 0 and server.requests < 16


def test_a_truncated_json_answer_is_still_retried(tmp_path):
  """Only bodies that are not JSON at all are permanent: half a JSON object is a glitch."""
  examples = make_examples(1)
  with FakeOpenAI(examples, always="truncated") as server:
    client = Client(ClientConfig(server.base_url, "m", max_retries=2, backoff_base_s=0.001,
                                 timeout_s=2.0))
    summary = _teach(tmp_path, client, examples, n=1)
  assert summary["errors"] == {"bad_response": 3} and summary["retries"] == 2
  assert summary["samples_missing"] == 1 and server.requests == 3


def test_a_trickling_server_is_cut_at_the_attempt_deadline():
  examples = make_examples(1)
  # About 300 bytes at 20 ms each: 6 s to answer, though no single read waits 0.5 s.
  with FakeOpenAI(examples, always="trickle", trickle_s=0.02) as server:
    client = Client(ClientConfig(server.base_url, "m", timeout_s=0.5, deadline_s=0.8,
                                 max_retries=1, backoff_base_s=0.001))
    builder = PromptBuilder(exemplars.OBQA)
    started = time.monotonic()
    with pytest.raises(CallFailed) as e:
      client.complete(builder.payload(examples[0], Sampling()), 1, seed=0)
    elapsed = time.monotonic() - started
  assert e.value.kind == "deadline" and e.value.attempts == 2
  assert "0.8s deadline" in str(e.value)
  assert 1.6 <= elapsed < 4.0  # two attempts of 0.8 s, each cut where the deadline fell


def test_hanging_replies_never_exceed_the_bound_at_the_server(tmp_path):
  examples = make_examples(8)
  bound = 3
  with FakeOpenAI(examples, always="hang", hang_s=0.4) as server:
    client = Client(ClientConfig(server.base_url, "m", timeout_s=0.1, deadline_s=2.0,
                                 max_retries=1, backoff_base_s=0.001, max_backoff_s=0.001))
    summary = _teach(tmp_path, client, examples, n=1, max_in_flight=bound)
  assert summary["errors"] == {"timeout": 16} and summary["samples_missing"] == 8
  assert server.requests == 16  # every attempt reached the server...
  assert server.max_active == bound  # ...never more than `bound` of them at once


def test_https_to_a_plain_http_server_is_a_tls_error_that_stops_the_run(tmp_path):
  examples = make_examples(8)
  with FakeOpenAI(examples, faults=False) as server:
    url = server.base_url.replace("http://", "https://")
    client = _patient(url)
    with pytest.raises(FatalError) as e:
      _teach(tmp_path, client, examples)
  assert "TLS error" in str(e.value) and url in str(e.value)
  assert client.stats.as_dict()["retries"] == 0


@pytest.mark.parametrize("error,kind", [
    (ConnectionRefusedError(111, "Connection refused"), "refused"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), None),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), None),  # a dropped connection
    (ConnectionResetError(104, "Connection reset by peer"), None),
    (TimeoutError("timed out"), None),
])
def test_connection_errors_are_classified(error, kind):
  got = client_lib.classify_connection_error(error)
  assert (got[0] if got else None) == kind
