"""Wikipedia-scale BM25: a sharded index of millions of DPR-like passages on one machine.

  .venv/bin/python bench/retrieval_scale.py            # 1M and 5M passages, ~15-25 min idle
  .venv/bin/python bench/retrieval_scale.py --tiny     # 2k and 6k passages, seconds (CI)

A synthetic corpus of DPR-like passages (exactly 100 words: Zipfian over a 300k-word vocabulary,
English stop words at the top ranks) is written to a passages file; each size is then indexed by
`kard_jax.retrieval.sharded_index` in a fresh process (so its peak RSS is the index's alone),
streaming the file, and queried with 10-word queries drawn from random passages at top-100.
Per size: build time (wall and CPU), peak RSS (the building process, and the largest tokenising
worker), index size on disk (score matrices, and everything with the passages), queries/s with
--threads threads and with one, latency. Then a projection to --project passages (default 21M,
Wikipedia's DPR split) from the growth between the two measured sizes, linear in the number of
passages (queries/s: time per query linear) -- labelled as a projection, not a measurement.

Targets on the 2-core, 24 GB machine: 5M passages in < 15 min with peak RSS < 12 GB, >= 300
queries/s at top-100. Writes --out (default results/bench_retrieval_scale.json, stamped; --tiny
writes only with --out); the last stdout line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (QUERY_WORDS, WORDS_PER_PASSAGE, make_work_dir,  # noqa: E402
                          sample_queries, write_corpus)


def _dir_bytes(path: str, matrices_only: bool = False) -> int:
  total = 0
  for root, _, names in os.walk(path):
    for name in names:
      if not matrices_only or name in ("data.npy", "indices.npy", "indptr.npy"):
        total += os.path.getsize(os.path.join(root, name))
  return total


def measure(passages_path: str, n: int, queries: list[str], out_dir: str, shard_size: int,
            threads: int, workers: int, k: int) -> dict:
  """Runs in a fresh process: build the first `n` passages, then query."""
  import itertools

  from kard_jax.retrieval.bm25_index import load_index
  from kard_jax.retrieval.passages import read_passages
  from kard_jax.retrieval.sharded_index import build_sharded_index

  def cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

  t, c = time.perf_counter(), cpu_s()
  build_sharded_index(itertools.islice(read_passages(passages_path), n), out_dir,
                      shard_size=shard_size, workers=workers, show_progress=True,
                      source=passages_path).close()
  build_s, build_cpu_s = time.perf_counter() - t, cpu_s() - c
  build_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  worker_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
  index = load_index(out_dir)
  index.search(queries[:200], k, n_threads=threads)  # warm the page cache

  def qps(n_threads: int) -> float:
    best = float("inf")
    for _ in range(2):
      start = time.perf_counter()
      index.search(queries, k, n_threads=n_threads)
      best = min(best, time.perf_counter() - start)
    return len(queries) / best

  qps_multi, qps_single = qps(threads), qps(1)
  latencies = []
  for q in queries[:200]:
    start = time.perf_counter()
    index.search([q], k, n_threads=1)
    latencies.append(time.perf_counter() - start)
  manifest = index.manifest
  index.close()
  return {"passages": n, "shards": manifest["num_shards"], "shard_size": shard_size,
          "vocab_size": manifest["vocab_size"], "postings": manifest["nnz"],
          "build_s": round(build_s, 1), "build_cpu_s": round(build_cpu_s, 1),
          "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
                               3),
          "peak_rss_build_gb": round(build_rss / 1e9, 3),
          "peak_rss_tokenising_worker_gb": round(worker_rss / 1e9, 3),
          "index_gb_matrices": round(_dir_bytes(out_dir, matrices_only=True) / 1e9, 3),
          "index_gb_total": round(_dir_bytes(out_dir) / 1e9, 3),
          "k": k, "queries": len(queries), "threads": threads,
          "qps": round(qps_multi, 1), "qps_1_thread": round(qps_single, 1),
          "latency_ms_p50": round(1e3 * float(np.median(latencies)), 2),
          "latency_ms_p95": round(1e3 * float(np.percentile(latencies, 95)), 2)}


def project(small: dict, large: dict, target: int) -> dict:
  """Linear growth in the number of passages through the two measurements (a projection)."""
  def line(key, value=lambda r, key: r[key]):
    a, b = value(small, key), value(large, key)
    slope = (b - a) / (large["passages"] - small["passages"])
    return b + slope * (target - large["passages"])

  def qps(key):  # None when timing noise makes the larger index look faster
    sec = line(key, lambda r, key: 1.0 / r[key])
    return round(1.0 / sec, 1) if sec > 1.0 / large[key] * 0.999 else None

  return {"passages": target, "method": "linear in passages through the two measured sizes "
          "(queries/s: time per query linear); a projection, not a measurement",
          "build_s": round(line("build_s"), 0), "peak_rss_gb": round(line("peak_rss_gb"), 2),
          "index_gb_total": round(line("index_gb_total"), 2),
          "index_gb_matrices": round(line("index_gb_matrices"), 2),
          "qps": qps("qps"), "qps_1_thread": qps("qps_1_thread")}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--passages", type=int, default=5_000_000, help="the large size")
  parser.add_argument("--growth_from", type=int, default=1_000_000,
                      help="the smaller size measured for the growth (projection)")
  parser.add_argument("--project", type=int, default=21_000_000, help="projection target")
  parser.add_argument("--shard_size", type=int, default=1_000_000)
  parser.add_argument("--vocab", type=int, default=300_000, help="pseudo-words in the corpus")
  parser.add_argument("--queries", type=int, default=2_000)
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--threads", type=int, default=2, help="retrieval threads (2 cores)")
  parser.add_argument("--workers", type=int, default=2, help="tokenising processes")
  parser.add_argument("--tiny", action="store_true",
                      help="2k and 6k passages (20k-word vocabulary), shards of 2.5k, 100 queries, "
                      "tokenised in-process (CI)")
  parser.add_argument("--out", default=None,
                      help="results file (default results/bench_retrieval_scale.json; --tiny: "
                      "none unless given)")
  parser.add_argument("--work_dir", default=None,
                      help="where the corpus and indexes go (default: a temporary directory)")
  parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  make_work_dir(parser, args.work_dir)
  if args.child:
    with open(args.child, encoding="utf-8") as f:
      spec = json.load(f)
    print(json.dumps(measure(**spec)))
    return 0
  if args.tiny:
    args.passages, args.growth_from, args.shard_size, args.queries = 6_000, 2_000, 2_500, 100
    args.project, args.workers, args.vocab = 100_000, 0, 20_000
  out = args.out or (None if args.tiny else os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results",
      "bench_retrieval_scale.json"))
  if not 0 < args.growth_from < args.passages:
    print("bench/retrieval_scale.py: need 0 < --growth_from < --passages", file=sys.stderr)
    return 2

  from kard_jax.report.stamp import Measurement, write_results

  with Measurement(packages=("numpy", "scipy", "bm25s", "PyStemmer")) as m, \
      tempfile.TemporaryDirectory(prefix="kard-bench-scale-", dir=args.work_dir) as tmp:
    passages_path = os.path.join(tmp, "passages.jsonl")
    start = time.perf_counter()
    write_corpus(passages_path, args.passages, vocab_size=args.vocab)
    print(f"generated {args.passages:,} passages in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    queries = sample_queries(passages_path, args.growth_from, args.queries)
    runs = []
    for n in (args.growth_from, args.passages):
      spec = {"passages_path": passages_path, "n": n, "queries": queries,
              "out_dir": os.path.join(tmp, f"index_{n}"), "shard_size": args.shard_size,
              "threads": args.threads, "workers": args.workers, "k": args.k}
      spec_path = os.path.join(tmp, f"spec_{n}.json")
      with open(spec_path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
      proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", spec_path],
                            stdout=subprocess.PIPE, text=True, check=True)
      run = json.loads(proc.stdout.strip().splitlines()[-1])
      runs.append(run)
      print(f"[{n:,} passages, {run['shards']} shards] built in {run['build_s']:.0f} s "
            f"({run['build_cpu_s']:.0f} CPU-s), peak RSS {run['peak_rss_gb']:.2f} GB (worker "
            f"{run['peak_rss_tokenising_worker_gb']:.2f} GB), index {run['index_gb_total']:.2f} GB "
            f"on disk; top-{args.k}: {run['qps']:,.0f} q/s with {args.threads} threads, "
            f"{run['qps_1_thread']:,.0f} with 1", file=sys.stderr)
      shutil_rmtree(spec["out_dir"])
  projection = project(runs[0], runs[1], args.project)
  large = runs[1]
  targets = {"build_s_max": 900, "peak_rss_gb_max": 12, "qps_min": 300}
  met = {"build_s": large["build_s"] < targets["build_s_max"],
         "peak_rss_gb": large["peak_rss_gb"] < targets["peak_rss_gb_max"],
         "qps": large["qps"] >= targets["qps_min"]}
  figures = {f"{key}_{large['passages'] // 1_000_000 or large['passages']}"
             f"{'M' if large['passages'] >= 1_000_000 else ''}": large[key]
             for key in ("build_s", "peak_rss_gb", "index_gb_total", "qps", "qps_1_thread")}
  figures.update({f"projected_{key}_{args.project / 1e6:g}M": projection[key]
                  for key in ("build_s", "peak_rss_gb", "index_gb_total", "qps")})
  payload = {"command": m.command,
             "machine": f"{os.cpu_count()} CPUs, load average {m.load_before} before and "
                        f"{m.load_after} after (see stamp)",
             "figures": figures,
             "targets": f"{args.passages:,} passages indexed in < 15 min with peak RSS < 12 GB; "
                        f">= 300 queries/s at top-{args.k}; projected_* figures are projections",
             "corpus": {"kind": "synthetic DPR-like", "words_per_passage": WORDS_PER_PASSAGE,
                        "vocab": f"{args.vocab:,} pseudo-words + English stop words, Zipf s=1.1",
                        "query_words": QUERY_WORDS},
             "measured": runs, "projection": projection, "target_values": targets,
             "targets_met": met, "tiny": bool(args.tiny)}
  if out:
    write_results(out, payload, m.stamp(threads={"retrieval": args.threads,
                                                 "tokenising_workers": args.workers}))
    print(f"wrote {out}", file=sys.stderr)
  print(f"projection to {args.project:,} passages (not measured): build "
        f"{projection['build_s']:.0f} s, peak RSS {projection['peak_rss_gb']:.1f} GB, index "
        f"{projection['index_gb_total']:.1f} GB, {projection['qps']} q/s", file=sys.stderr)
  print(json.dumps({"passages": large["passages"], "build_s": large["build_s"],
                    "peak_rss_gb": large["peak_rss_gb"], "index_gb_total": large["index_gb_total"],
                    "qps": large["qps"], "qps_1_thread": large["qps_1_thread"],
                    "projected": {k: projection[k] for k in
                                  ("passages", "build_s", "peak_rss_gb", "index_gb_total", "qps")},
                    "load_avg_1m": {"before": m.load_before, "after": m.load_after}}))
  return 0


def shutil_rmtree(path: str) -> None:
  import shutil

  shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
  sys.exit(main())
