"""`kard serve` under load: 32 concurrent clients, dynamic batching against one request at a time.

For two model shapes, a tiny T5 (d_model 64, 2+2 layers, 1,024-row vocabulary) and the Flan-T5-small shape (d_model
512, 8+8 layers, 6 heads of 64, gated-GELU d_ff 1024, vocabulary 32,128), with random weights
(speed does not depend on them), the same service is started twice in this process: with dynamic
batching (batch buckets 1, 2, 4, ..., 32; a 10 ms window) and with batching disabled (batch 1). Each
time 32 client threads send greedy chat requests over HTTP (closed loop: a client sends its next
question when its answer arrives) for `--requests` requests per client after one warm-up
request each. Questions are synthetic-benchmark test questions; the index is their knowledge base
(BM25, 1 passage read); every decode runs `--new_tokens` tokens (EOS forbidden before), so both
servers do the same work per request. Reported per setting: requests/s, p50/p95 latency, mean
batch size and recompilations while serving (must be 0).

  ./run.sh bench serve        # or: .venv/bin/python bench/serve.py

Writes results/bench_serve.json (stamped); the last stdout line is one JSON object with the
requests/s ratio (batched over unbatched) per model.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CLIENTS = 32
SHAPES = {
    # The synthetic pipeline's students: a 1000-piece vocabulary (1024 rows).
    "tiny": dict(vocab_size=1024, d_model=64, num_heads=2, head_dim=32, d_ff=128,
                 num_encoder_layers=2, num_decoder_layers=2),
    "flan_t5_small": None,  # t5.T5Config.flan_t5("small")
}


def _world(folder: str, num_entities: int):
  """Synthetic questions, their knowledge-base index and a SentencePiece vocabulary."""
  from kard_jax.data import synthetic, vocab
  from kard_jax.retrieval import bm25_index
  from kard_jax.retrieval.passages import Passage

  bench = synthetic.generate(synthetic.SyntheticConfig(num_entities=num_entities))
  passages = [Passage(p["id"], p.get("title", ""), p["text"]) for p in bench.passages]
  bm25_index.build_index(passages, os.path.join(folder, "index"), show_progress=False)
  lines = [p.text for p in passages] + [ex.question for ex in bench.splits["train"]]
  spm = vocab.train_vocab(lines, os.path.join(folder, "spiece.model"), 1000)
  qs = ["Question: " + ex.question + " Answer Choices: " +
        " ".join(f"({c.label}) {c.text}" for c in ex.choices) for ex in bench.splits["test"]]
  return os.path.join(folder, "index"), spm, qs


def _student(shape: str, seed: int):
  import flax.linen as nn
  import jax
  from jax.sharding import NamedSharding, PartitionSpec as P

  from kard_jax.models import t5
  from kard_jax.training import partitioning

  config = (t5.T5Config.flan_t5("small", dropout_rate=0.0) if SHAPES[shape] is None
            else t5.T5Config(dropout_rate=0.0, **SHAPES[shape]))
  module = t5.Transformer(config)
  mesh = partitioning.create_mesh((1, 1))
  params = jax.jit(lambda k: nn.meta.unbox(t5.init_params(module, k)))(jax.random.key(seed))
  params = jax.device_put(params, NamedSharding(mesh, P()))
  n = sum(x.size for x in jax.tree.leaves(params))
  return types.SimpleNamespace(params=params, module=module, family="t5", mesh=mesh, step=0), n


def _load(url: str, questions: list[str], requests: int) -> dict:
  """32 closed-loop clients; latencies of every timed request and the wall time."""
  host = url.split("//")[1]
  latencies: list[float] = []
  lock = threading.Lock()
  errors: list[str] = []
  start_gate = threading.Barrier(CLIENTS + 1)

  def client(i: int) -> None:
    conn = http.client.HTTPConnection(host, timeout=600)

    def ask(q: str) -> float:
      body = json.dumps({"model": "kard", "messages": [{"role": "user", "content": q}]})
      t = time.perf_counter()
      conn.request("POST", "/v1/chat/completions", body=body,
                   headers={"Content-Type": "application/json"})
      r = conn.getresponse()
      data = r.read()
      if r.status != 200:
        errors.append(data.decode()[:200])
      return time.perf_counter() - t

    ask(questions[i % len(questions)])  # warm-up (not timed)
    start_gate.wait()
    for j in range(requests):
      dt = ask(questions[(i * requests + j) % len(questions)])
      with lock:
        latencies.append(dt)

  threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
  for t in threads:
    t.start()
  start_gate.wait()
  t0 = time.perf_counter()
  for t in threads:
    t.join()
  wall = time.perf_counter() - t0
  if errors:
    raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
  lat = np.asarray(latencies)
  return {"requests": int(lat.size), "wall_s": round(wall, 3),
          "requests_per_s": round(lat.size / wall, 3),
          "latency_p50_ms": round(1e3 * float(np.percentile(lat, 50)), 1),
          "latency_p95_ms": round(1e3 * float(np.percentile(lat, 95)), 1)}


def _measure(student, config_kwargs: dict, batching: bool, questions, requests: int) -> dict:
  from kard_jax.serve import engine as engine_lib
  from kard_jax.serve import server as server_lib

  buckets = (1, 2, 4, 8, 16, CLIENTS) if batching else (1,)
  engine = engine_lib.Engine(engine_lib.EngineConfig(batch_buckets=buckets, **config_kwargs),
                             student=student)
  compile_s = engine.compile()
  service = server_lib.Service(engine, batching=batching, window_ms=10.0)
  running = server_lib.Running(service)
  try:
    stats0 = dict(service.batcher.stats)
    out = _load(running.url, questions, requests)
    batches = service.batcher.stats["batches"] - stats0["batches"]
    decoded = service.batcher.stats["decoded"] - stats0["decoded"]
    out.update({"batching": batching, "batch_buckets": list(buckets),
                "compile_s": round(compile_s, 2),
                "mean_batch": round(decoded / max(1, batches), 2),
                "recompilations": engine.recompilations})
  finally:
    running.stop()
    engine.close()
  return out


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--requests", type=int, default=2, help="timed requests per client")
  parser.add_argument("--new_tokens", type=int, default=24, help="tokens generated per request")
  parser.add_argument("--models", default="tiny,flan_t5_small")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="results/bench_serve.json")
  args = parser.parse_args()
  models = [m for m in args.models.split(",") if m]
  unknown = [m for m in models if m not in SHAPES]
  if unknown:
    print(f"bench/serve.py: unknown model {unknown[0]!r}; choose from {', '.join(SHAPES)}",
          file=sys.stderr)
    return 2

  import logging
  logging.basicConfig(level=logging.WARNING)
  from kard_jax.report.stamp import Measurement, write_results

  results, summary = {}, {}
  with Measurement(packages=("jax", "jaxlib", "flax", "numpy")) as m:
    with tempfile.TemporaryDirectory() as folder:
      index, spm, questions = _world(folder, 300)
      common = dict(model_dir=folder, index_dir=index, vocab=spm, num_passages=1,
                    length_buckets=(128,), max_new_tokens=args.new_tokens, max_samples=0,
                    min_new_tokens=args.new_tokens)
      for name in models:
        student, n_params = _student(name, args.seed)
        rows = {}
        for batching in (True, False):
          label = "batched" if batching else "unbatched"
          rows[label] = _measure(student, common, batching, questions, args.requests)
          print(f"{name:14s} {label:9s} {rows[label]['requests_per_s']:8.2f} req/s  p50 "
                f"{rows[label]['latency_p50_ms']:8.1f} ms  p95 "
                f"{rows[label]['latency_p95_ms']:8.1f} ms  mean batch "
                f"{rows[label]['mean_batch']:.1f}", flush=True)
        ratio = rows["batched"]["requests_per_s"] / rows["unbatched"]["requests_per_s"]
        results[name] = {"parameters": int(n_params), **rows,
                         "requests_per_s_ratio": round(ratio, 2)}
        summary[f"{name}_ratio"] = round(ratio, 2)
  payload = {"benchmark": "serve", "clients": CLIENTS, "requests_per_client": args.requests,
             "new_tokens": args.new_tokens, "input_length_bucket": 128, "num_passages": 1,
             "target_ratio": 4.0, "models": results}
  write_results(args.out, payload, m.stamp(cpu_threads=os.cpu_count()))
  print(json.dumps({"out": args.out, **summary, "target": 4.0,
                    "load_avg_1m": m.load_before}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
