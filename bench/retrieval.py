"""Retrieval speed: our BM25 against rank_bm25, and our index at 1 million passages.

  ./run.sh bench retrieval            # or: .venv/bin/python bench/retrieval.py [--help]

One synthetic corpus (Zipfian words over a 300k vocabulary with English stop words at the top
ranks, passages of 50-150 words like DPR's 100-word windows) and one set of queries (10 words
drawn from a random passage, stop words included, as questions have them):
  1. on --small passages (default 20k, small enough for rank_bm25 to finish in ~30 s): queries/s
     of our index and of rank_bm25's BM25Okapi with the same tokens and k1/b. Like for like, the
     headline ratio is ours on ONE thread over rank_bm25 (single-threaded); ours on --threads
     threads is its own figure, and bm25s's own `retrieve` over the same index is shown for
     context. Index builds are timed separately and are not in the ratio;
  2. on --large passages (default 1M), in a fresh subprocess: index time (streaming the passages
     file through tokenisation and scoring), query throughput and single-query latency, and the
     process's peak resident memory.
Distance to the physical limit: a query reads the postings (score and passage id) of each of its
terms; those bytes per query times our single-thread queries/s, over this machine's streaming
bandwidth (a compiled `jnp.sum` over a large array, measured in the same run), is the headline's
second figure. Postings are gathered and scattered, not streamed, so this bound is loose.

Writes results/bench_retrieval.json (figures + stamp); the last stdout line is the headline JSON.
Needs rank_bm25: pip install -r bench/requirements.txt (./run.sh bench retrieval does it).
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

from bench import common  # noqa: E402
from kard_jax.report import bench as bench_lib  # noqa: E402


def synthetic_corpus(n: int, seed: int = 0, vocab_size: int = 300_000, zipf_s: float = 1.1,
                     mean_len: int = 100) -> list[str]:
  """Zipfian text: English stop words take the top ranks (~40% of tokens, as in English)."""
  rng = np.random.default_rng(seed)
  vocab, cdf = common.zipf_vocabulary(rng, vocab_size, zipf_s)
  out = []
  for start in range(0, n, 100_000):  # bounded memory for the token ids
    m = min(100_000, n - start)
    lengths = rng.integers(mean_len // 2, mean_len * 3 // 2 + 1, size=m)
    words = vocab[np.searchsorted(cdf, rng.random(int(lengths.sum())))]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    out.extend(" ".join(words[offsets[i]:offsets[i + 1]]) for i in range(m))
  return out


def synthetic_queries(corpus: list[str], n: int, seed: int = 1, words: int = 10) -> list[str]:
  rng = np.random.default_rng(seed)
  out = []
  for i in rng.integers(0, len(corpus), size=n):
    w = corpus[i].split()
    out.append(" ".join(rng.choice(w, size=min(words, len(w)), replace=False)))
  return out


def _qps(fn, n: int, repeats: int = 2) -> float:
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return n / best


def small_run(n: int, queries: list[str], corpus: list[str], k: int, threads: int,
              rank_budget_s: float) -> dict:
  import rank_bm25

  from kard_jax.retrieval.bm25_index import build_index
  from kard_jax.retrieval.passages import Passage

  with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    index = build_index((Passage(str(i), "", text) for i, text in enumerate(corpus[:n])),
                        os.path.join(tmp, "index"), show_progress=False)
    ours_index_s = time.perf_counter() - t
    ours = _qps(lambda: index.search(queries, k, n_threads=threads), len(queries))
    ours_1 = _qps(lambda: index.search(queries, k, n_threads=1), len(queries))
    tokens = [index.tokenizer.decode(q) for q in index.encode(queries)]
    bm25s_qps = _qps(lambda: index.retriever.retrieve(
        [t or [""] for t in tokens], k=k, n_threads=threads, show_progress=False), len(queries), 1)
    ours_hits = index.search(queries, k, n_threads=threads)
    matrix = index.matrix
    posting_bytes = matrix.data.dtype.itemsize + matrix.indices.dtype.itemsize
    postings = [int(np.sum(matrix.indptr[np.unique(e) + 1] - matrix.indptr[np.unique(e)]))
                for e in index.encode(queries)]
    bytes_per_query = posting_bytes * float(np.mean(postings))
    # rank_bm25 over the same tokens (bm25s's tokenizer, which ours reproduces), same k1 and b.
    import bm25s
    import Stemmer

    t = time.perf_counter()
    docs = bm25s.tokenize(corpus[:n], stopwords="english", stemmer=Stemmer.Stemmer("english"),
                          return_ids=False, show_progress=False)
    rank = rank_bm25.BM25Okapi(docs, k1=0.9, b=0.4)
    rank_index_s = time.perf_counter() - t
    done, overlap, t = 0, [], time.perf_counter()
    while done < len(tokens) and time.perf_counter() - t < rank_budget_s:
      scores = rank.get_scores(tokens[done])
      top = np.argpartition(-scores, k)[:k]
      overlap.append(len(set(top.tolist()) & set(ours_hits[done][0].tolist())) / k)
      done += 1
    rank_qps = done / (time.perf_counter() - t)
    index.close()
  return {"passages": n, "queries": len(queries), "ours_qps": ours, "ours_qps_1_thread": ours_1,
          "bm25s_retrieve_qps": bm25s_qps, "rank_bm25_qps": rank_qps,
          "rank_bm25_queries": done, "ours_index_s": ours_index_s,
          "rank_bm25_index_s": rank_index_s,
          "top_k_overlap_with_rank_bm25": float(np.mean(overlap)),
          "posting_bytes_per_query": bytes_per_query}


def large_child(passages_path: str, queries_path: str, out_dir: str, k: int, threads: int,
                workers: int) -> dict:
  """Runs in a fresh process, so its peak RSS is the index's alone."""
  from kard_jax.retrieval.bm25_index import build_index, load_index
  from kard_jax.retrieval.passages import read_passages

  with open(queries_path, encoding="utf-8") as f:
    queries = json.load(f)
  def cpu_s() -> float:  # this process and its finished tokenising workers
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

  t, c = time.perf_counter(), cpu_s()
  build_index(read_passages(passages_path), out_dir, workers=workers, show_progress=True).close()
  index_s, index_cpu_s = time.perf_counter() - t, cpu_s() - c
  index = load_index(out_dir, mmap=True)
  index.search(queries[:200], k, n_threads=threads)  # warm the page cache
  qps = _qps(lambda: index.search(queries, k, n_threads=threads), len(queries))
  c = cpu_s()
  index.search(queries, k, n_threads=threads)
  query_cpu_s = cpu_s() - c
  latencies = []
  for q in queries[:300]:
    t = time.perf_counter()
    index.search([q], k, n_threads=1)
    latencies.append(time.perf_counter() - t)
  index.close()
  rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
  return {"index_s": index_s, "qps": qps, "latency_ms_p50": 1e3 * float(np.median(latencies)),
          "latency_ms_p95": 1e3 * float(np.percentile(latencies, 95)), "peak_rss_gb": rss_gb,
          "index_cpu_s": index_cpu_s, "qps_per_cpu_s": len(queries) / query_cpu_s}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--small", type=int, default=20_000, help="passages for the rank_bm25 run")
  parser.add_argument("--large", type=int, default=1_000_000, help="passages for the scale run")
  parser.add_argument("--queries", type=int, default=2_000)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--threads", type=int, default=2,
                      help="threads of ours' multi-threaded figure and the scale run")
  parser.add_argument("--workers", type=int, default=2, help="tokenising processes for the build")
  parser.add_argument("--rank_budget_s", type=float, default=30.0,
                      help="time given to rank_bm25's queries")
  parser.add_argument("--child", nargs=3, metavar=("PASSAGES", "QUERIES", "OUT"),
                      help=argparse.SUPPRESS)
  bench_lib.add_flags(parser, "retrieval")
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(large_child(*args.child, args.k, args.threads, args.workers)))
    return 0
  vocab_size = 300_000
  if args.tiny:
    args.small, args.large, args.queries, args.rank_budget_s = 300, 600, 64, 1.0
    vocab_size = 3_000
  if min(args.small, args.large, args.queries, args.threads, args.workers) < 1 or \
      args.k >= args.small or args.rank_budget_s <= 0:
    parser.error("sizes, --threads and --workers must be >= 1, --k < --small, "
                 "--rank_budget_s > 0")
  try:
    import rank_bm25  # noqa: F401
  except ImportError:
    print("bench/retrieval.py compares against rank_bm25, which is not installed: run\n"
          "  .venv/bin/python -m pip install -r bench/requirements.txt", file=sys.stderr)
    return 2

  m = bench_lib.measurement(("bm25s", "PyStemmer", "scipy", "rank-bm25", "jax"), __file__, argv)
  from kard_jax.report import limits as limits_lib

  # Streaming bandwidth of one thread: pinned to one core while measuring.
  cores = sorted(os.sched_getaffinity(0))
  os.sched_setaffinity(0, cores[:1])
  limits = limits_lib.measure(4 * 2**20, 128, repeats=2) if args.tiny else limits_lib.measure()
  os.sched_setaffinity(0, cores)

  t = time.perf_counter()
  corpus = synthetic_corpus(max(args.small, args.large), vocab_size=vocab_size)
  queries = synthetic_queries(corpus, args.queries)
  print(f"generated {len(corpus):,} passages, {len(queries):,} queries in "
        f"{time.perf_counter() - t:.0f} s", file=sys.stderr)

  small = small_run(args.small, queries, corpus, args.k, args.threads, args.rank_budget_s)
  ratio = small["ours_qps_1_thread"] / small["rank_bm25_qps"]
  print(f"[{small['passages']:,} passages, top-{args.k}] ours {small['ours_qps_1_thread']:,.0f} "
        f"q/s on 1 thread ({small['ours_qps']:,.0f} with {args.threads}), bm25s retrieve "
        f"{small['bm25s_retrieve_qps']:,.0f} q/s, rank_bm25 {small['rank_bm25_qps']:,.1f} q/s "
        f"-> {ratio:,.0f}x single-threaded; top-{args.k} overlap with rank_bm25 "
        f"{small['top_k_overlap_with_rank_bm25']:.2f} (BM25Okapi's idf differs from Lucene's)",
        file=sys.stderr)

  with tempfile.TemporaryDirectory(prefix="kard-bench-retrieval-") as tmp:
    from kard_jax.retrieval.passages import Passage, write_passages

    passages_path = os.path.join(tmp, "passages.jsonl")
    write_passages(passages_path, (Passage(f"p{i}", "", text) for i, text in
                                   enumerate(corpus[:args.large])))
    del corpus
    queries_path = os.path.join(tmp, "queries.json")
    with open(queries_path, "w", encoding="utf-8") as f:
      json.dump(queries, f)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", passages_path, queries_path,
           os.path.join(tmp, "index"), "--k", str(args.k), "--threads", str(args.threads),
           "--workers", str(args.workers)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    large = json.loads(proc.stdout.strip().splitlines()[-1])
  print(f"[{args.large:,} passages] indexed in {large['index_s']:.0f} s "
        f"({args.workers} tokenising processes); {large['qps']:,.0f} q/s with {args.threads} "
        f"threads; latency p50 {large['latency_ms_p50']:.1f} ms, p95 "
        f"{large['latency_ms_p95']:.1f} ms; peak RSS {large['peak_rss_gb']:.2f} GB",
        file=sys.stderr)

  read_rate = small["posting_bytes_per_query"] * small["ours_qps_1_thread"]
  fraction = limits_lib.bandwidth_fraction(read_rate, limits)["fraction_of_measured_bandwidth"]
  n, big = f"{args.small:,}", f"{args.large:,}"
  figures, about = {}, {}

  def put(name, value, what):
    figures[name], about[name] = value, what

  put("qps_ratio_vs_rank_bm25", ratio, "ours on 1 thread / rank_bm25 (1 thread), queries/s")
  put("qps_ratio_multi_thread_vs_rank_bm25", small["ours_qps"] / small["rank_bm25_qps"],
      f"ours on {args.threads} threads / rank_bm25 on 1 (not like for like)")
  put("qps_small_ours_1_thread", small["ours_qps_1_thread"],
      f"ours, {n} passages, 1 thread, queries/s")
  put("qps_small_ours_multi_thread", small["ours_qps"],
      f"ours, {n} passages, {args.threads} threads, queries/s")
  put("qps_small_rank_bm25", small["rank_bm25_qps"],
      f"rank_bm25 BM25Okapi, {n} passages, queries/s ({small['rank_bm25_queries']:,} queries "
      f"in its {args.rank_budget_s:g} s budget)")
  put("qps_small_bm25s_retrieve", small["bm25s_retrieve_qps"],
      f"bm25s retrieve over our index, {args.threads} threads (context)")
  put("index_s_small_ours", small["ours_index_s"], f"our index build, {n} passages (not in ratio)")
  put("index_s_small_rank_bm25", small["rank_bm25_index_s"],
      f"rank_bm25 tokenise + build, {n} passages (not in ratio)")
  put("top_k_overlap_with_rank_bm25", small["top_k_overlap_with_rank_bm25"],
      f"share of top-{args.k} passages both return (BM25Okapi's idf differs from Lucene's)")
  put("posting_bytes_per_query", small["posting_bytes_per_query"],
      "mean bytes of postings (score + passage id) of a query's terms")
  put("measured_bandwidth_gb_per_s", limits["bandwidth_bytes_per_s"] / 1e9,
      "this machine's streaming bandwidth on one core (jnp.sum), GB/s")
  put("fraction_of_bandwidth_1_thread", fraction,
      "posting bytes per query x our 1-thread queries/s / measured bandwidth")
  put("index_s_large", large["index_s"],
      f"index build of {big} passages ({args.workers} tokenising processes), s")
  put("index_cpu_s_large", large["index_cpu_s"], f"the same in CPU seconds (all processes)")
  put("qps_large", large["qps"], f"ours, {big} passages, {args.threads} threads, queries/s")
  put("qps_per_cpu_s_large", large["qps_per_cpu_s"], f"ours, {big} passages, queries per CPU-s")
  put("latency_ms_p50_large", large["latency_ms_p50"], f"one query, {big} passages, median ms")
  put("latency_ms_p95_large", large["latency_ms_p95"], f"one query, {big} passages, 95th pct ms")
  put("peak_rss_gb_large", large["peak_rss_gb"], f"peak resident memory of the {big} run, GB")

  setup = (f"synthetic Zipfian corpus (vocabulary {vocab_size:,} words plus English stop words, "
           f"passages of 50-150 words); {args.queries:,} queries of 10 words drawn from random "
           f"passages; top-{args.k}; rank_bm25 BM25Okapi on the same tokens with the same "
           f"k1 0.9 / b 0.4; small run {n} passages, scale run {big} passages in a fresh "
           f"process (memory-mapped index)")
  bench_lib.finish(
      "retrieval", args.out, m, setup=setup,
      headline={"ratio": ratio,
                "ratio_is": f"queries/s on {n} passages, ours single-threaded over rank_bm25 "
                            "(single-threaded)",
                "fraction_of_limit": fraction,
                "limit_is": "a single-threaded query's posting reads per second over this "
                            "machine's measured one-core streaming bandwidth"},
      figures=figures, about=about,
      threads={"ours (headline)": 1, "ours (multi-threaded figure and scale run)": args.threads,
               "rank_bm25": 1},
      limits=limits)
  return 0


if __name__ == "__main__":
  sys.exit(main())
