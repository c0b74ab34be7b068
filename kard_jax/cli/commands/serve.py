"""`kard serve`: the distilled student as an OpenAI-compatible HTTP service showing its sources."""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys

HELP = ("serve a trained KARD student over HTTP in the OpenAI wire format (/v1/chat/completions, "
        "/v1/completions, /v1/models), with /healthz and a question page at /; answers carry the "
        "passages read, the parsed answer and the self-consistency vote")

EPILOG = """Either --model_dir, --index and --vocab name the pieces, or --work_dir names a finished
`kard pipeline` work directory and the student of --method is found in it (its newest trained
run, the vocabulary it was trained with, the benchmark's index and the number of passages it was
trained to read; kard_rerank also loads the pipeline's reranker). Example, after ./run.sh:
  ./run.sh kard serve --work_dir work_dir --method kard_bm25 --port 8000"""


def _ints(text: str) -> tuple[int, ...]:
  try:
    values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
  return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.epilog = EPILOG
  parser.formatter_class = argparse.RawDescriptionHelpFormatter
  src = parser.add_argument_group("what to serve")
  src.add_argument("--model_dir", help="training run directory (model_config.json + checkpoints)")
  src.add_argument("--index", help="BM25 index directory (`kard retrieval build`), memory-mapped")
  src.add_argument("--vocab", help="the SentencePiece model the student was trained with")
  src.add_argument("--extra_ids", type=int, default=0,
                   help="sentinel ids of the vocabulary (0 for ours, 100 for T5's; default 0)")
  src.add_argument("--reranker", default=None, metavar="RUN",
                   help="a trained reranker run: BM25 candidates are reranked (default: BM25 only)")
  src.add_argument("--work_dir", default=None,
                   help="a `kard pipeline` work directory to take the pieces from (see below)")
  src.add_argument("--method", default="kard_bm25", choices=("kard_bm25", "kard_rerank"),
                   help="with --work_dir: which student (default kard_bm25)")
  src.add_argument("--benchmark", default="synthetic",
                   help="with --work_dir: the benchmark's name (default synthetic)")
  ret = parser.add_argument_group("passages")
  ret.add_argument("--num_passages", type=int, default=None, metavar="K",
                   help="passages the student reads per question (default: what it was trained "
                   "with in --work_dir, else 3); requests may ask for fewer or more "
                   "(`num_passages`); passages are dropped, last first, when the input is too long")
  ret.add_argument("--num_candidates", type=int, default=100,
                   help="BM25 candidates handed to the reranker (default 100)")
  dec = parser.add_argument_group("decoding (compiled once at start-up)")
  dec.add_argument("--batch_buckets", type=_ints, default=(1, 4, 16, 32), metavar="B,B,...",
                   help="batch sizes compiled; the largest is the maximum batch (default 1,4,16,32)")
  dec.add_argument("--length_buckets", type=_ints, default=None, metavar="L,L,...",
                   help="input lengths compiled; the largest is the longest input accepted "
                   "(default: a quarter, half and all of the run's trained input length)")
  dec.add_argument("--max_tokens", type=int, default=None,
                   help="most tokens generated per answer, the limit of a request's max_tokens "
                   "(default: the run's trained target length)")
  dec.add_argument("--max_samples", type=int, default=5,
                   help="samples drawn per sampled request; a request's n may be 1..this; 0 "
                   "serves greedy decoding only and compiles half as much (default 5)")
  dec.add_argument("--temperature", type=float, default=1.0,
                   help="sampling temperature (requests with temperature 0, or n=1 and no "
                   "temperature, decode greedily; any other temperature samples with this one; "
                   "default 1.0)")
  dec.add_argument("--top_k", type=int, default=50, help="sampling top-k, 0 disables (default 50)")
  dec.add_argument("--top_p", type=float, default=0.95,
                   help="sampling top-p, 1 disables (default 0.95)")
  dec.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
  dec.add_argument("--mesh_shape", default="1,1",
                   help="(data, model) device mesh of the decoder; -1 takes the remaining "
                   "devices; batch buckets must be multiples of the data axis (default 1,1)")
  srv = parser.add_argument_group("server")
  srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
  srv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks one)")
  srv.add_argument("--batch_window_ms", type=float, default=10.0,
                   help="how long the first request of a batch waits for others (default 10)")
  srv.add_argument("--no_batching", action="store_true",
                   help="decode one request at a time (the benchmark's baseline)")
  srv.add_argument("--verbose", action="store_true", help="log every HTTP request")


def newest_finished(*patterns: str) -> str | None:
  """The stage directory matching one of `patterns` whose DONE.json finished last."""
  best, best_time = None, ""
  for d in (d for pattern in patterns for d in glob.glob(pattern)):
    done = os.path.join(d, "DONE.json")
    if os.path.isfile(done):
      with open(done, encoding="utf-8") as f:
        finished = json.load(f).get("finished", "")
      if finished >= best_time:
        best, best_time = d, finished
  return best


def from_work_dir(work_dir: str, benchmark: str, method: str) -> dict:
  """model_dir, index, vocab, num_passages (and reranker) of a pipeline's student."""
  from kard_jax.data.errors import InputError

  stages = os.path.join(work_dir, "stages", benchmark)
  # train/<method>/s<seed>/<key>: the student of any training seed (the newest finished).
  train = newest_finished(os.path.join(stages, "train", "kard_bm25", "s*", "*"),
                          os.path.join(stages, "train", "kard_bm25", "*"))
  if train is None:
    raise InputError(work_dir, f"no finished {benchmark}/train/kard_bm25 stage; run "
                     "`./run.sh` (or `kard pipeline`) first")
  with open(os.path.join(train, "DONE.json"), encoding="utf-8") as f:
    manifest = json.load(f)
  out = {"model_dir": os.path.join(train, "model"),
         "vocab": os.path.join(manifest["inputs"]["vocab"]["path"], "spiece.model"),
         "index": os.path.join(work_dir, "data", benchmark, "index"),
         "num_passages": int((manifest.get("config") or {}).get("num_passages", 3)),
         "extra_ids": int((manifest.get("config") or {}).get("extra_ids", 0) or 0)}
  if method == "kard_rerank":
    reranker = newest_finished(os.path.join(stages, "reranker", "*"))
    if reranker is None:
      raise InputError(work_dir, f"no finished {benchmark}/reranker stage")
    out["reranker"] = os.path.join(reranker, "model")
  return out


def run(args: argparse.Namespace) -> int:
  from kard_jax.data.errors import InputError

  from kard_jax import logs
  logs.console_level("kard.serve", logging.DEBUG if args.verbose else logging.INFO)
  found = from_work_dir(args.work_dir, args.benchmark, args.method) if args.work_dir else {}
  model_dir = args.model_dir or found.get("model_dir")
  index = args.index or found.get("index")
  vocab = args.vocab or found.get("vocab")
  missing = [f"--{n}" for n, v in (("model_dir", model_dir), ("index", index), ("vocab", vocab))
             if not v]
  if missing:
    print(f"kard serve: give {', '.join(missing)} (or --work_dir)", file=sys.stderr)
    return 2
  if not os.path.isfile(os.path.join(model_dir, "model_config.json")):
    raise InputError(model_dir, "not a training run (no model_config.json)")
  if not os.path.isfile(vocab):
    raise InputError(vocab, "no such vocabulary file")

  from kard_jax.serve import engine as engine_lib
  from kard_jax.serve import server as server_lib

  try:
    config = engine_lib.EngineConfig(
        model_dir=model_dir, index_dir=index, vocab=vocab,
        extra_ids=args.extra_ids if args.extra_ids else found.get("extra_ids", 0),
        reranker_dir=args.reranker or found.get("reranker"),
        num_passages=args.num_passages if args.num_passages is not None
        else found.get("num_passages", 3), num_candidates=args.num_candidates,
        batch_buckets=args.batch_buckets, length_buckets=args.length_buckets,
        max_new_tokens=args.max_tokens, max_samples=args.max_samples,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
        mesh_shape=tuple(int(v) for v in args.mesh_shape.split(",")))
  except ValueError as e:
    print(f"kard serve: {e}", file=sys.stderr)
    return 2
  log = logging.getLogger("kard.serve")
  try:
    engine = engine_lib.Engine(config)
  except ValueError as e:
    print(f"kard serve: {e}", file=sys.stderr)
    return 2
  service = server_lib.Service(engine, batching=not args.no_batching,
                               window_ms=args.batch_window_ms)
  try:
    httpd = server_lib.make_server(service, args.host, args.port)
  except OSError as e:
    print(f"kard serve: cannot listen on {args.host}:{args.port} ({e})", file=sys.stderr)
    return 2
  host, port = httpd.server_address[:2]
  import threading  # pylint: disable=import-outside-toplevel
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  log.info("listening on http://%s:%d (/healthz says ready once compiled)", host, port)
  engine.compile()
  log.info("ready: model %r, %d passages indexed", engine.model_name, len(engine.index))
  try:
    threading.Event().wait()
  except KeyboardInterrupt:
    pass
  finally:
    httpd.shutdown()
    service.batcher.stop()
  return 0
