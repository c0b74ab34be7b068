"""The serving pieces that need no model: question parsing, request validation, stream pieces,
and the batcher's handling of cancelled jobs."""

from __future__ import annotations

import json
import threading
import time

import pytest

from kard_jax.data import prompts
from kard_jax.data.example import Choice, Example
from kard_jax.serve import api, questions
from kard_jax.serve.batcher import Batcher

LIMITS = api.Limits(("kard-t5-step3", "kard"), max_samples=3, max_tokens=24, max_passages=16)


def test_benchmark_format_question_parses_to_question_and_choices():
  q, c = questions.parse_question(
      "Question: Where does Ada live? Answer Choices: (A) Nuzha (B) Daake town (C) Buuzoul")
  assert q == "Where does Ada live?"
  assert c == (Choice("A", "Nuzha"), Choice("B", "Daake town"), Choice("C", "Buuzoul"))


def test_choices_on_their_own_lines_and_free_text():
  q, c = questions.parse_question("Is the sky green?\n(A) yes\n(B) no")
  assert (q, [x.text for x in c]) == ("Is the sky green?", ["yes", "no"])
  assert questions.parse_question("Who wrote it?") == ("Who wrote it?", ())


def test_model_input_is_the_evaluation_prompt():
  choices = (Choice("A", "x"), Choice("B", "y"))
  example = Example("e", "Q?", choices, "A")
  assert questions.model_input("Q?", choices, ["p one", "p two"]) == prompts.render_inputs(
      "kard", example, passages=["p one", "p two"])


def test_text_pieces_concatenate_to_the_full_text():
  full = "So, the answer is Daake."
  prefixes = ["So", "So,", "So, the", "So, thX", "So, the answer is", "So, the answer is Daake."]
  pieces = api.text_pieces(full, prefixes)
  assert "".join(pieces) == full
  assert pieces[:3] == ["So", ",", " the"]
  assert "".join(api.text_pieces("abc", ["zz"])) == "abc"


@pytest.mark.parametrize("body, status, param", [
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "q"}]}, 404, "model"),
    ({"messages": []}, 400, "messages"),
    ({}, 400, "messages"),
    ({"messages": [{"role": "system", "content": "q"}]}, 400, "messages"),
    ({"messages": [{"role": "user", "content": "q"}], "n": 4}, 400, "n"),
    ({"messages": [{"role": "user", "content": "q"}], "n": 0}, 400, "n"),
    ({"messages": [{"role": "user", "content": "q"}], "max_tokens": 25}, 400, "max_tokens"),
    ({"messages": [{"role": "user", "content": "q"}], "temperature": 3}, 400, "temperature"),
    ({"messages": [{"role": "user", "content": "q"}], "stream": "yes"}, 400, "stream"),
])
def test_bad_requests_are_4xx_with_the_parameter_named(body, status, param):
  with pytest.raises(api.ApiError) as e:
    api.parse_request(api.CHAT, body, LIMITS)
  assert e.value.status == status
  assert e.value.body()["error"]["param"] == param


def test_request_modes():
  ask = lambda **kw: api.parse_request(api.CHAT, {  # noqa: E731
      "messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": [{"type": "text", "text": "second"}]}], **kw},
      LIMITS)
  assert ask().greedy and ask().question == "second" and ask().max_tokens == 24
  assert not ask(n=3).greedy and ask(n=3, temperature=0).greedy
  assert not ask(temperature=0.7).greedy
  assert api.parse_request(api.COMPLETION, {"prompt": ["q"]}, LIMITS).question == "q"
  with pytest.raises(api.ApiError):
    api.parse_json(b"{not json")
  greedy_only = api.Limits(("kard",), max_samples=0, max_tokens=8, max_passages=4)
  assert api.parse_request(api.CHAT, {"messages": [{"role": "user", "content": "q"}]},
                           greedy_only).greedy
  with pytest.raises(api.ApiError) as e:
    api.parse_request(api.CHAT, {"messages": [{"role": "user", "content": "q"}], "n": 1,
                                 "temperature": 0.5}, greedy_only)
  assert e.value.body()["error"]["code"] == "sampling_disabled"


def test_cancelled_job_is_dropped_before_decoding_and_frees_its_slot():
  release = threading.Event()
  decoded: list[list[str]] = []

  def decode(mode, rows):
    decoded.append(list(rows))
    release.wait(5)
    return [r.upper() for r in rows]

  batcher = Batcher(decode, max_batch=2, window_s=0.0)
  try:
    first = batcher.submit("greedy", "a")
    while not decoded:  # the worker is busy with "a"
      time.sleep(0.01)
    gone = batcher.submit("greedy", "b")
    kept = [batcher.submit("greedy", "c"), batcher.submit("greedy", "d")]
    gone.cancel()
    release.set()
    for job in [first] + kept:
      assert job.done.wait(5)
    assert decoded == [["a"], ["c", "d"]]  # "b" never decoded; "d" took its slot
    assert [j.result for j in kept] == ["C", "D"] and gone.result is None
    assert batcher.stats["dropped_cancelled"] == 1
  finally:
    release.set()
    batcher.stop()


def test_jobs_of_one_mode_batch_together_and_modes_do_not_mix():
  seen: list[tuple[str, list[int]]] = []
  batcher = Batcher(lambda mode, rows: seen.append((mode, list(rows))) or list(rows),
                    max_batch=4, window_s=0.2)
  try:
    jobs = [batcher.submit("greedy", 1), batcher.submit("sample", 2), batcher.submit("greedy", 3)]
    for job in jobs:
      assert job.done.wait(5)
    assert seen == [("greedy", [1, 3]), ("sample", [2])]
  finally:
    batcher.stop()


def test_bench_results_render_as_the_readme_table(tmp_path):
  from kard_jax.report import readme

  row = lambda rps, batch: {"requests_per_s": rps, "latency_p50_ms": 100.0,  # noqa: E731
                            "latency_p95_ms": 150.0, "mean_batch": batch, "recompilations": 0}
  results = {"stamp": {"command": "bench/serve.py", "load_avg_1m": {"before": 0.5, "after": 1.0},
                       "device": {"cpu": {"cpu_model": "Xeon", "logical_cores": 2}}},
             "clients": 32, "requests_per_client": 2, "new_tokens": 24, "target_ratio": 4.0,
             "models": {"tiny": {"parameters": 1_500_000, "batched": row(40.0, 12.5),
                                 "unbatched": row(8.0, 1.0), "requests_per_s_ratio": 5.0}}}
  (tmp_path / "results").mkdir()
  (tmp_path / "results" / "bench_serve.json").write_text(json.dumps(results))
  text = "<!-- table: results/bench_serve.json -->\nold\n<!-- /table -->\n"
  out = readme.regenerate(text, str(tmp_path))
  assert "| tiny (1.50M) | batched | 40.00 | 100 | 150 | 12.5 | 0 |" in out
  assert "| tiny (1.50M) | unbatched | 8.00 |" in out
  assert "tiny 5.0x (target 4.0x)" in out and "load average 0.5 before" in out


def test_many_clients_connecting_at_once_are_all_served():
  import http.client
  import types

  from kard_jax.serve import server as server_lib

  service = types.SimpleNamespace(names=("kard",), created=0, count=lambda name: None)
  httpd = server_lib.make_server(service, "127.0.0.1", 0)
  port = httpd.server_address[1]
  statuses: list[int] = []
  conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(64)]
  for c in conns:  # 64 connections queue in the backlog before the server accepts any
    c.connect()
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  try:
    for c in conns:
      c.request("GET", "/v1/models")
    for c in conns:
      r = c.getresponse()
      statuses.append(r.status)
      assert json.loads(r.read())["data"][0]["id"] == "kard"
  finally:
    httpd.shutdown()
    httpd.server_close()
  assert statuses == [200] * 64
