"""`kard retrieval`: ingest knowledge bases, build BM25 indexes, retrieve, evaluate recall."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import tempfile

from kard_jax.cli import flags

HELP = ("Knowledge-base ingestion, BM25 indexes (bm25s, Lucene's k1=0.9 b=0.4 by default), "
        "KARD's rationale-as-query and question-as-query retrieval, and recall@k of gold evidence.")

_EPILOG = """examples:
  kard retrieval build --kb ../shared/data/obqa/openbook.txt --out indexes/obqa
  kard retrieval retrieve --index indexes/obqa --data_dir DATA/obqa --query question --split test
  kard retrieval retrieve --index indexes/obqa --data_dir DATA/obqa --query rationale
  kard retrieval evaluate --kb ../shared/data/obqa/openbook.txt --gold_format obqa \\
      --gold ../shared/data/obqa/dev.jsonl --queries question,question_choices
"""


def _kb_options(p: argparse.ArgumentParser) -> None:
  p.add_argument("--format", default="auto", choices=["auto", "jsonl", "tsv", "lines"],
                 help="knowledge-base format: jsonl {id,title,text}, tsv (id, text, title, as "
                 "DPR's psgs_w100.tsv, or a header row), lines (one fact per line, quotes "
                 "stripped); auto: by extension (.jsonl/.json, .tsv, .txt)")
  p.add_argument("--window", type=flags.positive_int, default=100,
                 help="split documents longer than this many words into windows (DPR: 100)")
  p.add_argument("--stride", type=flags.positive_int, default=None,
                 help="words between window starts (default: the window, no overlap)")
  p.add_argument("--no_split", action="store_true", help="keep documents whole")
  p.add_argument("--no_dedupe", action="store_true", help="keep exact duplicate passages")


def _index_options(p: argparse.ArgumentParser, defaults: bool = True) -> None:
  d = (lambda v: v) if defaults else (lambda v: None)
  p.add_argument("--k1", type=flags.non_negative_float, default=d(0.9),
                 help="BM25 k1 (Lucene/pyserini: 0.9)")
  p.add_argument("--b", type=flags.float_range(0.0, 1.0), default=d(0.4),
                 help="BM25 b (Lucene/pyserini: 0.4)")
  p.add_argument("--stopwords", default=d("english"),
                 help="a bm25s stop-word list (english, english_plus, german, ...), 'none', or a "
                 "file with one word per line")
  p.add_argument("--stemmer", default=d("english"), help="a PyStemmer algorithm, or 'none'")
  p.add_argument("--no_title", action="store_true", default=None if not defaults else False,
                 help="index passage text without its title")


def _build_options(p: argparse.ArgumentParser) -> None:
  p.add_argument("--workers", type=flags.non_negative_int, default=None,
                 help="tokenising processes (default: one per CPU; 0: in this process)")
  p.add_argument("--chunk_size", type=flags.positive_int, default=20_000,
                 help="passages per tokenised chunk")
  p.add_argument("--shard_size", type=flags.positive_int, default=None,
                 help="split the index into shards of this many passages, scored with corpus-wide "
                 "statistics (identical results; memory: one shard's matrix). Default: one index")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.formatter_class = argparse.RawDescriptionHelpFormatter
  parser.epilog = _EPILOG
  sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

  p = sub.add_parser("ingest",
                     help="knowledge-base files -> kb/passages.jsonl (split, de-duplicated)")
  p.add_argument("--kb", nargs="+", required=True, help="knowledge-base files")
  p.add_argument("--out", required=True,
                 help="passages file to write, e.g. DATA/obqa/kb/passages.jsonl")
  _kb_options(p)

  p = sub.add_parser("build", help="ingest knowledge-base files and build a BM25 index directory")
  p.add_argument("--kb", nargs="+", required=True, help="knowledge-base files")
  p.add_argument("--out", required=True, help="index directory (an older index there is replaced)")
  p.add_argument("--passages_out", default=None,
                 help="also write the ingested passages here "
                 "(e.g. DATA/<benchmark>/kb/passages.jsonl)")
  _kb_options(p)
  _index_options(p)
  _build_options(p)

  p = sub.add_parser("retrieve", help="write a retrieval file for a prepared benchmark")
  p.add_argument("--index", required=True, help="index directory from `kard retrieval build`")
  p.add_argument("--data_dir", required=True, help="prepared benchmark directory DATA/<benchmark>")
  p.add_argument("--query", required=True, choices=["question", "rationale"],
                 help="question: top-k candidates per example (inference, reranker input); "
                 "rationale: one list per teacher rationale (training)")
  p.add_argument("--split", default=None,
                 help="examples split for question queries (default test), rationale split for "
                 "rationale queries (default train)")
  p.add_argument("--k", type=flags.positive_int, default=None,
                 help="passages per query (question: 100, rationale: 10)")
  p.add_argument("--with_choices", action="store_true",
                 help="append the answer choices to questions")
  p.add_argument("--out", default=None,
                 help="retrieval file (default: DATA/<benchmark>/retrieval/question_SPLIT.jsonl "
                 "or rationale_train.jsonl)")
  p.add_argument("--threads", type=flags.positive_int, default=None,
                 help="retrieval threads (default: one per CPU)")
  p.add_argument("--verify", action="store_true", help="check every index file's checksum first")
  _index_options(p, defaults=False)

  p = sub.add_parser("evaluate", help="recall@k of gold evidence (last line: the table as JSON)")
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--index", help="index directory")
  src.add_argument("--kb", nargs="+", help="knowledge-base files to index in a temporary directory")
  p.add_argument("--gold_format", required=True, choices=["strategyqa", "obqa", "examples"],
                 help="strategyqa: golden_sentences_*.json; obqa: official jsonl with fact1; "
                 "examples: prepared examples with extra.gold_passages")
  p.add_argument("--gold", nargs="+", required=True, help="gold files")
  p.add_argument("--rationales", default=None,
                 help="rationales (ours: id/sample/rationale, or a raw teacher file: "
                 "qid/question/rationale)")
  p.add_argument("--queries", default=None,
                 help="comma-separated: question, question_choices, rationale (default: question, "
                 "plus rationale when --rationales is given)")
  p.add_argument("--only_with_rationales", action="store_true",
                 help="evaluate only questions that have a rationale (same questions in every row)")
  p.add_argument("--k", default="1,5,10,20", help="comma-separated cut-offs")
  p.add_argument("--benchmark", default="", help="benchmark name for the table")
  p.add_argument("--split", default="", help="which questions, for the table")
  p.add_argument("--out", default=None, help="write the table as JSON here")
  p.add_argument("--append", action="store_true",
                 help="merge into an existing --out file (rows with the same benchmark/split/query "
                 "are replaced; the commands are chained with &&)")
  p.add_argument("--threads", type=flags.positive_int, default=None, help="retrieval threads")
  _kb_options(p)
  _index_options(p)
  _build_options(p)


def _ingest_config(args):
  from kard_jax.retrieval.ingest import IngestConfig

  try:
    return IngestConfig(window=None if args.no_split else args.window, stride=args.stride,
                        dedupe=not args.no_dedupe)
  except ValueError as e:
    raise SystemExit(f"kard retrieval: {e}") from None


def _stopwords(value):
  if value is None or value.lower() == "none":
    return None
  if os.path.isfile(value):
    with open(value, encoding="utf-8") as f:
      return tuple(w.strip() for w in f if w.strip())
  return value


def _bm25_config(args):
  from kard_jax.retrieval.bm25_index import BM25Config
  from kard_jax.retrieval.tokenizer import TokenizerConfig

  stemmer = None if (args.stemmer or "none").lower() == "none" else args.stemmer
  try:
    return BM25Config(k1=args.k1, b=args.b, index_title=not args.no_title,
                      tokenizer=TokenizerConfig(stopwords=_stopwords(args.stopwords),
                                                stemmer=stemmer))
  except ValueError as e:
    raise SystemExit(f"kard retrieval: {e}") from None


def _workers(args) -> int:
  return (os.cpu_count() or 1) if args.workers is None else args.workers


@contextlib.contextmanager
def _tee(passages, path):
  """Passes passages through while writing them to `path` atomically (only if all succeed)."""
  if path is None:
    yield passages
    return
  from kard_jax.data.jsonl import atomic_open

  with atomic_open(path) as f:
    def gen():
      for p in passages:
        f.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")
        yield p
    yield gen()


def _build(args, out_dir):
  from kard_jax.retrieval import bm25_index, ingest

  stats = ingest.IngestStats()
  config = _bm25_config(args)
  passages = ingest.iter_kb(args.kb, args.format, _ingest_config(args), stats)
  with _tee(passages, getattr(args, "passages_out", None)) as stream:
    if args.shard_size is not None:
      from kard_jax.retrieval import sharded_index

      index = sharded_index.build_sharded_index(
          stream, out_dir, config, shard_size=args.shard_size, workers=_workers(args),
          chunk_size=args.chunk_size, source=",".join(args.kb))
    else:
      index = bm25_index.build_index(stream, out_dir, config, workers=_workers(args),
                                     chunk_size=args.chunk_size, source=",".join(args.kb))
  return index, stats


def _run_ingest(args) -> int:
  from kard_jax.retrieval import ingest

  stats = ingest.ingest(args.kb, args.out, args.format, _ingest_config(args))
  print(json.dumps({"out": args.out, **stats.to_json()}))
  return 0


def _run_build(args) -> int:
  index, stats = _build(args, args.out)
  m = index.manifest
  print(json.dumps({"index": args.out, **stats.to_json(), "vocab_size": m["vocab_size"],
                    "avg_doc_len": round(m["avg_doc_len"], 2),
                    "num_shards": m.get("num_shards", 1), "settings": m["settings"]}))
  return 0


def _expected(args, index_config):
  """The settings the caller asked for explicitly (others are taken from the index)."""
  import dataclasses

  changes = {}
  if args.k1 is not None:
    changes["k1"] = args.k1
  if args.b is not None:
    changes["b"] = args.b
  if args.no_title:
    changes["index_title"] = False
  tok = {}
  if args.stopwords is not None:
    tok["stopwords"] = _stopwords(args.stopwords)
  if args.stemmer is not None:
    tok["stemmer"] = None if args.stemmer.lower() == "none" else args.stemmer
  if tok:
    changes["tokenizer"] = dataclasses.replace(index_config.tokenizer, **tok)
  return dataclasses.replace(index_config, **changes) if changes else None


def _run_retrieve(args) -> int:
  from kard_jax.data.errors import InputError
  from kard_jax.retrieval import bm25_index, retrieval_file, retrieve

  index = bm25_index.load_index(args.index, verify=args.verify)
  expect = _expected(args, index.config)
  if expect is not None:
    index = bm25_index.load_index(args.index, expect=expect)
  if args.query == "question":
    from kard_jax.data.example import read_examples

    split = args.split or "test"
    path = os.path.join(args.data_dir, "examples", f"{split}.jsonl")
    records = retrieve.retrieve_questions(
        index, read_examples(path), k=args.k or retrieve.DEFAULT_CANDIDATES,
        with_choices=args.with_choices, n_threads=args.threads)
  else:
    from kard_jax.data.rationale import read_rationales

    split = args.split or "train"
    path = os.path.join(args.data_dir, "rationales", f"{split}.jsonl")
    if not os.path.isfile(path):
      raise InputError(path, "no rationales; collect them with `kard teach` first")
    records = retrieve.retrieve_rationales(index, read_rationales(path),
                                           k=args.k or retrieve.DEFAULT_RATIONALE_K,
                                           n_threads=args.threads)
  out = args.out or os.path.join(args.data_dir, "retrieval",
                                 retrieval_file.standard_name(args.query, split))
  n = retrieval_file.write_retrieval_file(out, records)
  empty = sum(1 for r in records if not r.passages)
  print(json.dumps({"out": out, "queries": n, "without_passages": empty}))
  return 0


def _command_line(args) -> str:
  """The evaluate invocation, rebuilt from its arguments (what `command` records)."""
  parts = ["kard", "retrieval", "evaluate"]
  for flag, value in [("--index", args.index), ("--kb", args.kb)]:
    if value:
      parts += [flag] + (value if isinstance(value, list) else [value])
  parts += ["--gold_format", args.gold_format, "--gold", *args.gold]
  for flag in ("rationales", "queries", "k", "benchmark", "split", "out"):
    value = getattr(args, flag)
    if value not in (None, ""):
      parts += [f"--{flag}", str(value)]
  if args.only_with_rationales:
    parts.append("--only_with_rationales")
  if args.append:
    parts.append("--append")
  if args.kb:
    defaults = {"format": "auto", "window": 100, "stride": None, "k1": 0.9, "b": 0.4,
                "stopwords": "english", "stemmer": "english"}
    for flag, default in defaults.items():
      if getattr(args, flag) != default:
        parts += [f"--{flag}", str(getattr(args, flag))]
    for flag in ("no_split", "no_dedupe", "no_title"):
      if getattr(args, flag):
        parts.append(f"--{flag}")
  return shlex.join(parts)


def _merged_stamp(old: dict | None, new: dict) -> dict:
  """One stamp for a file that `--append` runs fill in turn: the chained command, the latest
  run's provenance, the summed wall time, the first run's starting load, and every part's own."""
  part_keys = ("command", "commit", "dirty", "load_avg_1m", "wall_s", "written_utc")
  part = {k: new[k] for k in part_keys}
  if not old:
    return {**new, "parts": [part]}
  parts = [p for p in old.get("parts", []) if p.get("command") != new["command"]] + [part]
  return {**new, "command": " && ".join(p["command"] for p in parts),
          "dirty": any(p["dirty"] for p in parts) or len({p["commit"] for p in parts}) > 1,
          "load_avg_1m": {"before": parts[0]["load_avg_1m"]["before"],
                          "after": new["load_avg_1m"]["after"]},
          "wall_s": round(sum(p["wall_s"] for p in parts), 3), "parts": parts}


def _run_evaluate(args) -> int:
  from kard_jax.report import stamp as stamp_lib

  with stamp_lib.Measurement(packages=("bm25s", "PyStemmer", "scipy", "numpy"),
                             argv=shlex.split(_command_line(args))) as measurement:
    return _evaluate(args, measurement)


def _evaluate(args, measurement) -> int:
  from kard_jax.report import retrieval_tables
  from kard_jax.retrieval import bm25_index, gold, metrics

  ks = [int(k) for k in args.k.split(",") if k.strip()]
  kinds = (args.queries.split(",") if args.queries else
           ["question"] + (["rationale"] if args.rationales else []))
  with tempfile.TemporaryDirectory(prefix="kard-eval-index-") as tmp:
    if args.kb:
      index, _ = _build(args, os.path.join(tmp, "index"))
    else:
      index = bm25_index.load_index(args.index)
    queries = gold.load_gold(args.gold_format, args.gold, index.passages)
    rationales = gold.load_rationales(args.rationales) if args.rationales else None
    rows = metrics.evaluate(index, queries, kinds=kinds, rationales=rationales, ks=ks,
                            n_threads=args.threads,
                            only_with_rationales=args.only_with_rationales)
    settings = index.manifest["settings"]
    num_passages = index.manifest["num_passages"]
    index.close()
  rows = [{"benchmark": args.benchmark, "split": args.split, "query": r.pop("query"),
           "passages": num_passages, **r} for r in rows]
  command = _command_line(args)
  result = {"command": command, "settings": settings, "rows": rows}
  if args.out:
    from kard_jax.data.jsonl import atomic_open

    old = None
    if args.append and os.path.isfile(args.out):
      with open(args.out, encoding="utf-8") as f:
        old = json.load(f)
      keys = {(r["benchmark"], r["split"], r["query"]) for r in rows}
      merged = [r for r in old.get("rows", []) if (r["benchmark"], r["split"], r["query"])
                not in keys] + rows
      commands = [c for c in old.get("command", "").split(" && ") if c and c != command]
      result = {"command": " && ".join(commands + [command]), "settings": settings,
                "rows": merged}
    measurement.__exit__(None, None, None)  # the stamp's wall time and load end here
    stamp = _merged_stamp((old or {}).get("stamp"), measurement.stamp())
    stamp["command"] = result["command"]
    with atomic_open(args.out) as f:
      json.dump({"stamp": stamp, **result}, f, indent=1)
      f.write("\n")
  print(retrieval_tables.markdown_table({"rows": rows}), file=sys.stderr)
  print(json.dumps({"rows": rows}))
  return 0


def run(args) -> int:
  return {"ingest": _run_ingest, "build": _run_build, "retrieve": _run_retrieve,
          "evaluate": _run_evaluate}[args.action](args)
