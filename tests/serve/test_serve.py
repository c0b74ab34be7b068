"""`kard serve` end to end: a tiny KARD student from a real `kard train` run (through the
pipeline's stages, as `./run.sh` makes it), served and talked to with the official `openai`
client, raw HTTP and a headless Chromium on the page at /.

One module-scoped server (one training run, one start-up compilation) serves every test.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time

import openai
import pytest

from kard_jax.cli.commands.pipeline import read_stage_configs
from kard_jax.data.answers import parse_answer
from kard_jax.data.example import Choice, read_examples
from kard_jax.decoding import voting
from kard_jax.cli import main as cli
from kard_jax.pipeline import config as config_lib
from kard_jax.pipeline import runner
from kard_jax.cli.commands import serve as serve_cmd
from kard_jax.serve import engine as engine_lib
from kard_jax.serve import questions
from kard_jax.serve import server as server_lib

TINY_STUDENT = ["T5Config.d_model=32", "T5Config.num_heads=2", "T5Config.head_dim=16",
                "T5Config.d_ff=64", "TRAIN_STEPS=2", "WARMUP_STEPS=1", "BATCH_SIZE=8",
                "TASK_FEATURE_LENGTHS={'inputs': 256, 'targets': 24}"]
STAGES = ["data", "kb", "teacher", "vocab", "index", "retrieval", "train"]


def _train_student(root: str) -> str:
  config = config_lib.PipelineConfig(
      benchmark="synthetic",
      synthetic={"num_entities": 24, "num_validation": 8, "num_test": 16,
                 "rationales_per_question": 1, "train_questions_per_entity": 1,
                 "answer_format": "text"},
      vocab_size=200, num_candidates=6, rationale_k=2, num_passages=1, methods=("kard_bm25",),
      train_bindings=tuple(TINY_STUDENT), self_consistency=0, sweep_entities=(),
      results_dir=os.path.join(root, "results"), plot=False)
  work = os.path.join(root, "work")
  runner.run(config, work, read_stage_configs(config), only=STAGES, write=False)
  return work


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("serve"))
  work = _train_student(root)
  found = serve_cmd.from_work_dir(work, "synthetic", "kard_bm25")
  engine = engine_lib.Engine(engine_lib.EngineConfig(
      model_dir=found["model_dir"], index_dir=found["index"], vocab=found["vocab"],
      num_passages=found["num_passages"], batch_buckets=(4,), length_buckets=(256,),
      max_samples=3))
  service = server_lib.Service(engine, window_ms=50)
  running = server_lib.Running(service)
  health = _get(running.url, "/healthz")
  assert health[0] == 503 and health[1]["status"] == "compiling"  # not ready before compiling
  engine.compile()
  examples = read_examples(os.path.join(work, "data", "synthetic", "examples", "test.jsonl"))
  yield {"url": running.url, "service": service, "engine": engine, "found": found,
         "work": work, "examples": examples,
         "client": openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)}
  running.stop()
  engine.close()


def _get(url: str, path: str) -> tuple[int, dict]:
  conn = http.client.HTTPConnection(url.split("//")[1], timeout=60)
  conn.request("GET", path)
  r = conn.getresponse()
  return r.status, json.loads(r.read())


def _post_raw(url: str, path: str, body: bytes) -> tuple[int, dict]:
  conn = http.client.HTTPConnection(url.split("//")[1], timeout=60)
  conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
  r = conn.getresponse()
  return r.status, json.loads(r.read())


def _question(example) -> str:
  return ("Question: " + example.question + " Answer Choices: "
          + " ".join(f"({c.label}) {c.text}" for c in example.choices))


def _chat(client, content, **kw):
  return client.chat.completions.create(model="kard", messages=[{"role": "user",
                                                                  "content": content}], **kw)


def test_found_the_pipeline_student_and_what_it_was_trained_with(served):
  found = served["found"]
  assert os.path.isfile(os.path.join(found["model_dir"], "model_config.json"))
  assert found["vocab"].endswith("spiece.model") and os.path.isfile(found["vocab"])
  assert found["num_passages"] == 1
  status, health = _get(served["url"], "/healthz")
  assert status == 200 and health["status"] == "ready" and health["compile_seconds"] > 0
  names = [m.id for m in served["client"].models.list().data]
  assert names == [served["engine"].model_name, "kard"]


def test_chat_answers_with_rationale_passages_and_parsed_answer(served):
  example = served["examples"][0]
  out = _chat(served["client"], _question(example))
  content = out.choices[0].message.content
  kard = out.model_extra["kard"]
  assert out.object == "chat.completion" and out.choices[0].finish_reason in ("stop", "length")
  assert isinstance(content, str) and content
  assert [Choice(c["label"], c["text"]) for c in kard["choices"]] == list(example.choices)
  # The passage read is BM25's top one for the question, and it is in the model's input.
  index = served["engine"].index
  pos, _ = index.search([example.question], 1)[0]
  top = index.passages[int(pos[0])]
  assert [p["id"] for p in kard["passages"]] == [top.id]
  assert set(kard["passages"][0]) == {"id", "title", "text", "score"}
  assert kard["input"] == questions.model_input(example.question, example.choices, [top.text])
  assert kard["answers"] == [parse_answer(content, example.choices)]
  assert kard["answer"] == kard["answers"][0]
  assert {"retrieve_ms", "queue_ms", "decode_ms", "total_ms"} <= set(kard["timings"])
  assert out.usage.prompt_tokens == kard["prompt_tokens"] > 0


def test_completion_endpoint_gives_the_same_greedy_text(served):
  q = _question(served["examples"][1])
  chat = _chat(served["client"], q).choices[0].message.content
  completion = served["client"].completions.create(model="kard", prompt=q)
  assert completion.object == "text_completion"
  assert completion.choices[0].text == chat


def test_n_samples_and_their_vote(served):
  example = served["examples"][2]
  out = served["client"].completions.create(model="kard", prompt=_question(example), n=3,
                                            temperature=1.0)
  kard = out.model_extra["kard"]
  texts = [c.text for c in out.choices]
  assert [c.index for c in out.choices] == [0, 1, 2]
  assert kard["answers"] == [parse_answer(t, example.choices) for t in texts]
  vote = voting.majority_vote(kard["answers"], [c.label for c in example.choices])
  assert kard["votes"] == vote.counts
  assert kard["answer"] in (None, *vote.counts) and (kard["answer"] is None) == (not vote.counts)
  assert kard["decoding"]["num_decodes"] == 3
  assert len(set(texts)) > 1  # sampled, not three copies of one decode


def test_stream_chunks_concatenate_to_the_non_streamed_text(served):
  q = _question(served["examples"][3])
  full = _chat(served["client"], q).choices[0].message.content
  chunks = list(_chat(served["client"], q, stream=True))
  assert all(c.object == "chat.completion.chunk" for c in chunks)
  assert chunks[0].choices[0].delta.role == "assistant"
  assert "".join(c.choices[0].delta.content or "" for c in chunks) == full
  pieces = [c for c in chunks if c.choices[0].delta.content]
  assert len(pieces) >= min(2, len(full.split()))  # token by token
  assert chunks[-1].choices[0].finish_reason in ("stop", "length")
  assert chunks[-1].model_extra["kard"]["passages"]
  text = served["client"].completions.create(model="kard", prompt=q, stream=True)
  assert "".join(c.choices[0].text for c in text) == full


def test_max_tokens_cuts_the_answer(served):
  out = _chat(served["client"], _question(served["examples"][0]), max_tokens=2)
  assert out.usage.completion_tokens <= 2
  full = _chat(served["client"], _question(served["examples"][0]))
  if full.usage.completion_tokens > 2:
    assert out.choices[0].finish_reason == "length"
    assert full.choices[0].message.content.startswith(out.choices[0].message.content.strip())


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(served):
  client, url = served["client"], served["url"]
  status, body = _post_raw(url, "/v1/chat/completions", b'{"messages": [')
  assert status == 400 and body["error"]["code"] == "invalid_json"
  with pytest.raises(openai.BadRequestError) as e:
    client.chat.completions.create(model="kard", messages=[])
  assert e.value.body["param"] == "messages"
  with pytest.raises(openai.NotFoundError) as e:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
  assert e.value.body["code"] == "model_not_found"
  with pytest.raises(openai.BadRequestError) as e:
    _chat(client, "q", n=9)
  assert e.value.body["param"] == "n"
  with pytest.raises(openai.BadRequestError) as e:
    _chat(client, "q", max_tokens=10_000)
  assert e.value.body["param"] == "max_tokens"
  with pytest.raises(openai.BadRequestError) as e:
    _chat(client, "word " * 600)
  assert e.value.body["code"] == "context_length_exceeded"
  assert _get(url, "/healthz")[0] == 200
  assert _chat(client, _question(served["examples"][0])).choices[0].message.content


def test_a_long_question_loses_its_passages_before_it_is_refused(served):
  engine = served["engine"]
  example = served["examples"][4]
  passage = engine.search(example.question, 1)[0]["text"]
  question = example.question
  limit = engine.max_input_length
  while len(engine.tokenize(questions.model_input(question, example.choices, [passage]))) <= limit:
    question += " and more"
  assert len(engine.tokenize(questions.model_input(question, example.choices, []))) <= limit
  content = "Question: " + question + " Answer Choices: " + " ".join(
      f"({c.label}) {c.text}" for c in example.choices)
  kard = _chat(served["client"], content).model_extra["kard"]
  assert kard["passages"] == [] and kard["prompt_tokens"] <= limit


def test_concurrent_requests_batch_together_without_recompiling(served):
  client, service = served["client"], served["service"]
  qs = [_question(ex) for ex in served["examples"][:6]]
  alone = [_chat(client, q).choices[0].message.content for q in qs]
  before = service.batcher.stats["max_batch_seen"]
  results: dict[int, str] = {}

  def ask(i):
    results[i] = _chat(client, qs[i]).choices[0].message.content

  threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(qs))]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert [results[i] for i in range(len(qs))] == alone  # a batch decodes rows independently
  assert max(before, service.batcher.stats["max_batch_seen"]) > 1
  assert served["engine"].recompilations == 0
  assert _get(served["url"], "/healthz")[1]["recompilations"] == 0


def test_a_client_that_hangs_up_frees_its_slot(served):
  service = served["service"]
  release, busy = threading.Event(), threading.Event()
  decode = service.batcher.decode

  def held(mode, rows):
    busy.set()
    release.wait(30)
    return decode(mode, rows)

  service.batcher.decode = held
  try:
    before = dict(service.counts), dict(service.batcher.stats)
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(r=_chat(served["client"], "Question: a?")))
    t.start()
    assert busy.wait(30)
    host, port = served["url"].split("//")[1].split(":")
    body = json.dumps({"messages": [{"role": "user", "content": "Question: b?"}]}).encode()
    with socket.create_connection((host, int(port))) as s:
      s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                + body)
      time.sleep(0.3)  # queued behind the held batch
    deadline = time.time() + 10
    while service.counts["cancelled"] == before[0]["cancelled"] and time.time() < deadline:
      time.sleep(0.02)
    assert service.counts["cancelled"] == before[0]["cancelled"] + 1
  finally:
    release.set()
    service.batcher.decode = decode
  t.join(30)
  assert first["r"].choices[0].message.content is not None
  assert service.batcher.stats["dropped_cancelled"] == before[1]["dropped_cancelled"] + 1
  assert service.batcher.stats["decoded"] == before[1]["decoded"] + 1


def test_the_page_shows_answer_rationale_and_passages(served):
  from selenium import webdriver
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  example = served["examples"][5]
  expected = _chat(served["client"], _question(example))
  options = webdriver.ChromeOptions()
  options.binary_location = "/usr/bin/chromium"
  for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"):
    options.add_argument(flag)
  driver = webdriver.Chrome(options=options,
                            service=webdriver.ChromeService("/usr/bin/chromedriver"))
  try:
    driver.get(served["url"] + "/")
    box = driver.find_element(By.ID, "question")
    box.clear()
    box.send_keys(_question(example))
    driver.find_element(By.ID, "ask").click()
    WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.ID, "status").text.endswith(" ms"))
    rationale = driver.find_element(By.ID, "rationale").text
    passages = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#passages li")]
    answer = driver.find_element(By.ID, "answer").text
    model = driver.find_element(By.ID, "model").text
  finally:
    driver.quit()
  kard = expected.model_extra["kard"]
  assert rationale == " ".join(expected.choices[0].message.content.split())
  assert len(passages) == len(kard["passages"]) == 1
  assert passages[0].startswith(kard["passages"][0]["title"] + ": ")
  assert kard["passages"][0]["text"][:30] in passages[0]
  assert answer == ("(no choice named)" if kard["answer"] is None else
                    f"{kard['answer']} ({kard['answer_text']})")
  assert model == served["engine"].model_name


def test_a_compilation_while_serving_is_counted(served):
  import jax
  import numpy as np

  engine = served["engine"]
  before = engine.recompilations
  with engine_lib._WATCH.lock:  # another engine compiling its buckets: start-up, not serving
    engine_lib._WATCH.compiling += 1
  try:
    jax.jit(lambda x: x * 2)(np.arange(5.0))
  finally:
    with engine_lib._WATCH.lock:
      engine_lib._WATCH.compiling -= 1
  assert engine.recompilations == before
  jax.jit(lambda x: x * 3 + 1)(np.arange(7.0))  # a new program while serving
  assert engine.recompilations == before + 1
  assert _get(served["url"], "/healthz")[1]["recompilations"] == before + 1


def test_help_documents_every_flag(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["serve", "--help"])
  assert e.value.code == 0
  text = capsys.readouterr().out
  import argparse
  parser = argparse.ArgumentParser()
  serve_cmd.add_arguments(parser)
  flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
  assert len(flags) > 15
  for flag in flags:
    assert flag in text
  assert "--work_dir work_dir --method kard_bm25" in text


def test_missing_pieces_are_a_clear_error(tmp_path, capsys):
  assert cli.main(["serve", "--model_dir", str(tmp_path)]) == 2
  assert "--index" in capsys.readouterr().err
  assert cli.main(["serve", "--work_dir", str(tmp_path)]) == 2
  assert "no finished synthetic/train/kard_bm25" in capsys.readouterr().err
