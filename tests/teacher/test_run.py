"""The teacher stage end to end against a local endpoint that injects faults."""

import collections
import http.server
import json
import threading

import pytest

from kard_jax.data.answers import parse_answer
from kard_jax.data.rationale import read_rationales
from kard_jax.teacher import exemplars
from kard_jax.teacher.client import Client, ClientConfig, FatalError
from kard_jax.teacher.journal import Journal
from kard_jax.teacher.prompts import PromptBuilder, Sampling
from kard_jax.teacher.run import TeachConfig, _runs, plan, teach
from tests.teacher.fake_openai import FAULTS, FakeOpenAI, make_examples, sample_text


def fast_client(url: str, **overrides) -> Client:
  """Short timeouts and sleeps, so that dozens of injected faults cost a few seconds."""
  settings = dict(timeout_s=0.25, backoff_base_s=0.01, max_backoff_s=0.05, max_retry_after_s=0.2,
                  max_retries=6)
  settings.update(overrides)
  return Client(ClientConfig(url, "fake-teacher", **settings))


def expected_rationales(examples, n):
  """What the file must hold, derived from the server's texts independently of the stage."""
  out = []
  for ex in examples:
    for s in range(n):
      text = sample_text(ex, s)
      if parse_answer(text, ex.choices) == ex.answer:
        out.append((ex.id, s, text))
  return out


def journal_keys(path) -> collections.Counter:
  with open(path, encoding="utf-8") as f:
    lines = [json.loads(line) for line in f if line.strip()]
  return collections.Counter((e["id"], e["prompt_hash"], e["sample"]) for e in lines
                             if "failure" not in e)


def test_runs_of_consecutive_samples():
  assert list(_runs([0, 1, 2, 3, 4], 2)) == [(0, 1), (2, 3), (4,)]
  assert list(_runs([1, 3, 4, 5], 10)) == [(1,), (3, 4, 5)]
  assert list(_runs([], 3)) == []


@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_every_example_gets_its_rationales_despite_faults(tmp_path, mode):
  examples = make_examples(24)
  n = 4
  with FakeOpenAI(examples, hang_s=0.5) as server:
    client = fast_client(server.base_url, mode=mode)
    builder = PromptBuilder(exemplars.ARC, give_answer=True, mode=mode)
    with Journal(tmp_path / "journal.jsonl") as journal:
      summary = teach(examples, client=client, builder=builder, sampling=Sampling(),
                      journal=journal, config=TeachConfig(n=n, samples_per_request=2, seed=0,
                                                          max_in_flight=6, progress=False),
                      out_path=tmp_path / "train.jsonl")
  # A large share of attempts failed, in every way the server knows.
  assert set(server.fault_counts) == set(FAULTS)
  assert sum(server.fault_counts.values()) > 0.4 * server.requests
  assert summary["calls"] == server.requests
  # Each fault is seen as what it is (a slow machine may add timeouts of its own).
  faults = server.fault_counts
  assert summary["errors"]["http_429"] == faults["429"] + faults["429_date"]
  assert summary["errors"]["http_500"] == faults["500"]
  assert summary["errors"]["http_503"] == faults["503"]
  assert summary["errors"]["bad_response"] == faults["truncated"] + faults["fields"]
  assert summary["errors"]["connection"] == faults["drop"] + faults["cut"]
  assert summary["errors"]["timeout"] >= faults["hang"]
  assert summary["retries"] == sum(summary["errors"].values())
  assert summary["failures"] == 0 and summary["samples_missing"] == 0
  assert summary["prompt_tokens"] > 0 and summary["completion_tokens"] > 0
  # Each (example, prompt, sample) journaled exactly once, and all of them.
  keys = journal_keys(tmp_path / "journal.jsonl")
  assert set(keys.values()) == {1}
  assert {(i, s) for i, _, s in keys} == {(ex.id, s) for ex in examples for s in range(n)}
  assert len({h for _, h, _ in keys}) == len(examples)
  # The file holds exactly the gold-reaching samples, with the server's text.
  got = [(r.id, r.sample, r.rationale) for r in read_rationales(tmp_path / "train.jsonl")]
  assert got == expected_rationales(examples, n)
  assert {r[0] for r in got} == {ex.id for ex in examples}
  assert summary["kept"] == len(got)
  assert summary["kept"] + summary["wrong_answer"] + summary["unparsed"] == n * len(examples)


def test_rerun_asks_for_nothing_and_writes_the_same_file(tmp_path):
  examples = make_examples(6)
  config = TeachConfig(n=3, seed=0, progress=False, max_per_example=2)
  with FakeOpenAI(examples, faults=False) as server:
    outputs = []
    for run in range(2):
      with Journal(tmp_path / "journal.jsonl") as journal:
        summary = teach(examples, client=fast_client(server.base_url),
                        builder=PromptBuilder(exemplars.OBQA), sampling=Sampling(),
                        journal=journal, config=config, out_path=tmp_path / f"out{run}.jsonl")
      outputs.append((tmp_path / f"out{run}.jsonl").read_text())
      if run == 0:
        first_requests = server.requests
  assert summary["samples_cached"] == 18 and summary["requests"] == 0
  assert server.requests == first_requests
  assert outputs[0] == outputs[1]
  kept = read_rationales(tmp_path / "out1.jsonl")
  assert max(collections.Counter(r.id for r in kept).values()) <= 2


def test_changed_settings_ask_again(tmp_path):
  examples = make_examples(3)
  with FakeOpenAI(examples, faults=False) as server:
    for temperature in (0.7, 1.0):
      with Journal(tmp_path / "journal.jsonl") as journal:
        summary = teach(examples, client=fast_client(server.base_url),
                        builder=PromptBuilder(exemplars.OBQA), sampling=Sampling(temperature),
                        journal=journal, config=TeachConfig(n=2, seed=0, progress=False),
                        out_path=tmp_path / "out.jsonl")
      assert summary["samples_cached"] == 0 and summary["samples_new"] == 6
  assert len(journal_keys(tmp_path / "journal.jsonl")) == 12


def test_spent_retries_are_recorded_and_retried_by_the_next_run(tmp_path):
  examples = make_examples(12)
  with FakeOpenAI(examples) as server:
    with Journal(tmp_path / "journal.jsonl") as journal:
      first = teach(examples, client=fast_client(server.base_url, max_retries=0),
                    builder=PromptBuilder(exemplars.OBQA), sampling=Sampling(), journal=journal,
                    config=TeachConfig(n=2, seed=0, progress=False),
                    out_path=tmp_path / "out.jsonl")
    assert first["failures"] > 0 and first["samples_missing"] > 0
    with Journal(tmp_path / "journal.jsonl") as journal:
      assert len(journal.failures) == first["failures"]
      second = teach(examples, client=fast_client(server.base_url),
                     builder=PromptBuilder(exemplars.OBQA), sampling=Sampling(),
                     journal=journal, config=TeachConfig(n=2, seed=0, progress=False),
                     out_path=tmp_path / "out.jsonl")
  assert second["samples_cached"] == 24 - first["samples_missing"]
  assert second["samples_missing"] == 0
  assert set(journal_keys(tmp_path / "journal.jsonl").values()) == {1}


class _Verifier:
  """Accepts only even samples: a stand-in with a known verdict per rationale."""

  def verify(self, example, rationale):
    return rationale.sample % 2 == 0


def test_verifier_filters_and_reports_its_share(tmp_path):
  examples = make_examples(8)
  with FakeOpenAI(examples, faults=False) as server:
    with Journal(tmp_path / "journal.jsonl") as journal:
      summary = teach(examples, client=fast_client(server.base_url),
                      builder=PromptBuilder(exemplars.OBQA), sampling=Sampling(),
                      journal=journal, config=TeachConfig(n=4, seed=0, progress=False),
                      out_path=tmp_path / "out.jsonl", verifier=_Verifier())
  gold = expected_rationales(examples, 4)
  odd = sum(s % 2 for _, s, _ in gold)
  assert summary["verified"] == len(gold)
  assert summary["verifier_rejected"] == odd
  assert summary["verifier_filtered_share"] == pytest.approx(odd / len(gold), abs=1e-4)
  assert all(r.sample % 2 == 0 for r in read_rationales(tmp_path / "out.jsonl"))


def test_bad_key_stops_the_run(tmp_path):
  class Unauthorized(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits = []

    def log_message(self, *args):
      pass

    def do_POST(self):
      self.hits.append(self.path)
      self.rfile.read(int(self.headers["Content-Length"]))
      body = b'{"error": {"message": "Incorrect API key provided"}}'
      self.send_response(401)
      self.send_header("Content-Length", str(len(body)))
      self.end_headers()
      self.wfile.write(body)

  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
  threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                   daemon=True).start()
  try:
    with Journal(tmp_path / "journal.jsonl") as journal, pytest.raises(FatalError, match="401"):
      teach(make_examples(40), client=fast_client(f"http://127.0.0.1:{server.server_port}/v1"),
            builder=PromptBuilder(exemplars.OBQA), sampling=Sampling(), journal=journal,
            config=TeachConfig(n=2, max_in_flight=2, progress=False),
            out_path=tmp_path / "out.jsonl")
  finally:
    server.shutdown()
    server.server_close()
  assert not (tmp_path / "out.jsonl").exists()
  assert 1 <= len(Unauthorized.hits) < 10  # stops after the calls already under way, not 40


def test_plan_asks_only_for_what_the_journal_lacks(tmp_path):
  examples = make_examples(2)
  with Journal(tmp_path / "journal.jsonl") as journal:
    journal.append([{"id": "q000", "prompt_hash": "h0", "sample": s, "text": "t"}
                    for s in (0, 1, 3)])
    journal.append([{"id": "q001", "prompt_hash": "other", "sample": 0, "text": "t"}])
    jobs, cached = plan(examples, ["h0", "h1"], journal,
                        TeachConfig(n=6, samples_per_request=2))
  assert cached == 3
  assert [(j.example.id, j.samples) for j in jobs] == [
      ("q000", (2,)), ("q000", (4, 5)), ("q001", (0, 1)), ("q001", (2, 3)), ("q001", (4, 5))]
