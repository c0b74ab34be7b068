"""The BM25 index: built by streaming passages, saved as a directory, loaded memory-mapped.

Layout of an index directory (bm25s's own files, so `bm25s.BM25.load(dir, mmap=True)` also reads
it, plus ours):
  data.csc.index.npy, indices.csc.index.npy, indptr.csc.index.npy, vocab.index.json,
  params.index.json   bm25s's score matrix (passage x term, CSC), vocabulary and parameters
  passages.jsonl, passages.offsets.npy, passages.ids.json   the passages, read by position (or
                      id) without loading them all
  tokenizer.json      the stop words used, so queries are tokenised as the corpus was
  manifest.json       settings, versions, corpus checksum, file sizes and checksums; written last
The matrix equals what `bm25s.BM25(k1, b, method="lucene").index(...)` builds from the same
tokens, bit for bit; we build it with vectorised NumPy over each chunk's (passage, term, count)
triples instead of bm25s's per-document Python loops: ~6 bytes per triple while streaming, then a
counting sort straight into the final arrays (no global sort, no full-size temporaries).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import itertools
import json
import math
import os
import shutil
import tempfile
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError
from kard_jax.retrieval.passages import Passage, PassageStore, PassageWriter
from kard_jax.retrieval.scoring import Hits, TermMatrix
from kard_jax.retrieval.tokenizer import ChunkEncoder, EncodedChunk, Tokenizer, TokenizerConfig

FORMAT = "kard-bm25"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
_BM25S_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy",
                "vocab.index.json", "params.index.json")


@dataclasses.dataclass(frozen=True)
class BM25Config:
  """Defaults are Lucene's (KARD's pyserini runs); bm25s itself defaults to k1=1.5, b=0.75."""
  k1: float = 0.9
  b: float = 0.4
  method: str = "lucene"
  index_title: bool = True  # prepend each passage's title to the text that is indexed
  tokenizer: TokenizerConfig = TokenizerConfig()

  def __post_init__(self):
    if self.method != "lucene":
      raise ValueError(f"only the 'lucene' BM25 variant is supported, got {self.method!r}")
    if self.k1 < 0 or not 0 <= self.b <= 1:
      raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")

  def to_json(self) -> dict[str, Any]:
    return {"k1": self.k1, "b": self.b, "method": self.method, "index_title": self.index_title,
            "tokenizer": self.tokenizer.to_json()}

  @classmethod
  def from_json(cls, obj: dict[str, Any]) -> "BM25Config":
    return cls(k1=float(obj["k1"]), b=float(obj["b"]), method=obj["method"],
               index_title=bool(obj["index_title"]),
               tokenizer=TokenizerConfig.from_json(obj["tokenizer"]))


def _versions() -> dict[str, str]:
  import bm25s
  import Stemmer

  return {"bm25s": bm25s.__version__, "PyStemmer": getattr(Stemmer, "__version__", "unknown")}


def _encoded_chunks(passages: Iterable[Passage], writer: PassageWriter, encoder: ChunkEncoder,
                    config: BM25Config, workers: int, chunk_size: int,
                    boundary: int | None = None) -> Iterator[EncodedChunk]:
  """Writes passages as they stream by and yields their encoded chunks, in order (a chunk also
  ends at every multiple of `boundary` passages: no chunk straddles two shards)."""

  def texts() -> Iterator[list[str]]:
    batch = []
    count = 0
    for p in passages:
      writer.add(p)
      batch.append(p.index_text(config.index_title))
      count += 1
      if len(batch) == chunk_size or (boundary and count % boundary == 0):
        yield batch
        batch = []
    if batch:
      yield batch

  batches = texts()
  first = next(batches, None)
  second = next(batches, None) if first is not None else None
  if workers <= 0 or second is None:  # one chunk is not worth starting processes for
    for batch in itertools.chain([first, second], batches):
      if batch is not None:
        yield encoder(batch)
    return
  import concurrent.futures
  import multiprocessing

  # spawn: the parent may hold threads (JAX, TensorFlow) that make fork unsafe.
  ctx = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
    pending: collections.deque = collections.deque()
    for batch in itertools.chain([first, second], batches):  # <= 2 chunks per worker in flight
      pending.append(pool.submit(encoder, batch))
      while len(pending) > 2 * workers:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


@dataclasses.dataclass
class _Triples:
  """One chunk's (passage, term, count) triples, passage-major; passages implicit in `nnz`."""
  first: int  # the chunk's first passage
  nnz: np.ndarray  # int32 distinct terms per passage
  term: np.ndarray  # int32 global term ids
  tf: np.ndarray  # uint16 (int32 for a chunk with a count above 65535)


def lucene_idf(df: np.ndarray, n: int) -> np.ndarray:
  """bm25s's lucene idf per term (float32 values held in float64), from document frequencies."""
  # math.log, as bm25s computes idf, so every value matches to the last bit.
  return np.fromiter((math.log(1 + (n - d + 0.5) / (d + 0.5)) if d else 0.0 for d in df.tolist()),
                     np.float64, len(df)).astype(np.float32).astype(np.float64)


def average_length(lengths: np.ndarray) -> float:
  """The mean passage length, computed as bm25s does (every index must agree to the bit)."""
  return lengths.astype(np.int64).mean()


def _lucene_scores(chunks: list[_Triples], lengths: np.ndarray, df: np.ndarray, k1: float,
                   b: float) -> dict[str, np.ndarray]:
  """bm25s's lucene CSC arrays, with its float64-then-float32 arithmetic."""
  def drain() -> Iterator[_Triples]:  # frees each chunk once placed
    chunks.reverse()
    while chunks:
      yield chunks.pop()

  return scatter_scores(drain(), lengths, df, lucene_idf(df, len(lengths)),
                        average_length(lengths), k1, b)


def scatter_scores(chunks: Iterable[_Triples], lengths: np.ndarray, df: np.ndarray, idf: np.ndarray,
                   avgdl: float, k1: float, b: float, first: int = 0) -> dict[str, np.ndarray]:
  """The CSC arrays of passages `first` .. `first + len(lengths) - 1` (`chunks`, consumed one at
  a time, number passages globally; `df` counts postings among these passages only), scored with
  the given (possibly corpus-wide) `idf` and `avgdl`.

  Each chunk is scattered straight into its place in the final arrays (a counting sort by term
  that keeps passages ascending within a term), so memory stays near the size of the result.
  """
  n, num_terms = len(lengths), len(df)
  norm = k1 * ((1 - b) + (b * lengths.astype(np.int64)) / avgdl)  # per passage, float64
  indptr = np.zeros(num_terms + 1, np.int64)
  np.cumsum(df, out=indptr[1:])
  fill = indptr[:-1].copy()  # next free slot of each term
  indices = np.empty(int(indptr[-1]), np.int32)
  data = np.empty(int(indptr[-1]), np.float32)
  for c in chunks:
    doc = np.repeat(np.arange(c.first - first, c.first - first + len(c.nnz), dtype=np.int32),
                    c.nnz)
    order = np.argsort(c.term, kind="stable")
    term = c.term[order]
    rank = np.arange(len(term)) - np.searchsorted(term, term, side="left")
    dest = fill[term] + rank
    doc = doc[order]
    f = c.tf[order].astype(np.float64)
    indices[dest] = doc
    data[dest] = idf[term] * (f / (norm[doc] + f))
    uniq, counts = np.unique(term, return_counts=True)
    fill[uniq] += counts
  return {"data": data, "indices": indices, "indptr": indptr, "num_docs": n}


def _prepare_target(out_dir: str) -> None:
  if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.exists(
      os.path.join(out_dir, MANIFEST)):
    raise InputError(out_dir, "exists, is not empty and is not an index; refusing to replace it")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise InputError(out_dir, "exists and is not a directory")


def build_index(passages: Iterable[Passage], out_dir, config: BM25Config = BM25Config(), *,
                workers: int = 0, chunk_size: int = 20_000, show_progress: bool = True,
                source: str = "<passages>") -> "BM25Index":
  """Streams passages into a new index directory (replacing an older index there atomically).

  `workers` > 0 tokenises chunks in that many processes. Returns the loaded index.
  """
  import bm25s
  from tqdm.auto import tqdm

  out_dir = os.path.abspath(os.fspath(out_dir))
  _prepare_target(out_dir)
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
  try:
    writer = PassageWriter(tmp, source)
    tokenizer = Tokenizer(config.tokenizer)
    chunks: list[_Triples] = []
    lengths = []
    df = np.zeros(1024, np.int64)
    n = 0
    with tqdm(desc="index", unit=" passages", disable=not show_progress, mininterval=1.0) as bar:
      for chunk in _encoded_chunks(passages, writer, tokenizer.encoder, config, workers,
                                   chunk_size):
        term = tokenizer.globalize(chunk)
        if len(tokenizer.vocab) > len(df):
          df = np.concatenate([df, np.zeros(max(len(df), len(tokenizer.vocab)), np.int64)])
        df += np.bincount(term, minlength=len(df))
        tf = chunk.tf.astype(np.uint16) if chunk.tf.max(initial=0) < 1 << 16 else chunk.tf
        nnz = np.bincount(chunk.doc, minlength=len(chunk.lengths)).astype(np.int32)
        chunks.append(_Triples(n, nnz, term, tf))
        lengths.append(chunk.lengths)
        n += len(chunk.lengths)
        bar.update(len(chunk.lengths))
    corpus_sha = writer.close()
    if n == 0:
      raise InputError(source, "no passages to index")
    length = np.concatenate(lengths)
    scores = _lucene_scores(chunks, length, df[:len(tokenizer.vocab)], config.k1, config.b)
    del chunks
    retriever = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
    retriever.scores = scores
    retriever.vocab_dict = tokenizer.vocab
    retriever.nonoccurrence_array = None
    retriever.save(tmp, show_progress=False)
    with open(os.path.join(tmp, TOKENIZER_FILE), "w", encoding="utf-8") as f:
      json.dump({"stopwords": list(tokenizer.stopwords)}, f, ensure_ascii=False)
    files = {}
    for name in sorted(os.listdir(tmp)):
      p = os.path.join(tmp, name)
      files[name] = {"bytes": os.path.getsize(p), "sha256": jsonl.sha256_file(p)}
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "settings": config.to_json(),
        "versions": _versions(), "created": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="seconds"), "source": source, "num_passages": n,
        "vocab_size": len(tokenizer.vocab), "nnz": int(len(scores["data"])),
        "avg_doc_len": float(average_length(length)), "corpus_sha256": corpus_sha,
        "files": files}
    with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=1)
    if os.path.isdir(out_dir):
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".old", dir=parent)
      os.replace(out_dir, os.path.join(old, "index"))
      os.replace(tmp, out_dir)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return load_index(out_dir)


def _check_settings(path: str, built: BM25Config, expect: BM25Config) -> None:
  have, want = built.to_json(), expect.to_json()
  tok_have, tok_want = have.pop("tokenizer"), want.pop("tokenizer")
  have.update({f"tokenizer.{k}": v for k, v in tok_have.items()})
  want.update({f"tokenizer.{k}": v for k, v in tok_want.items()})
  diffs = [f"{k}={have[k]!r} (requested {want[k]!r})" for k in have if have[k] != want[k]]
  if diffs:
    raise InputError(os.path.join(path, MANIFEST), "index was built with other settings: "
                     + ", ".join(diffs) + "; rebuild it with `kard retrieval build` and these "
                     "settings, or drop them from the request")


def load_index(path, *, expect: BM25Config | None = None, mmap: bool = True,
               verify: bool = False) -> "BM25Index":
  """Opens an index directory. Checks the manifest, the file sizes (and with `verify` the
  checksums) and, given `expect`, that the index was built with those settings."""
  import bm25s

  path = os.path.abspath(os.fspath(path))
  manifest_path = os.path.join(path, MANIFEST)
  if not os.path.isfile(manifest_path):
    raise InputError(path, "not a BM25 index (no manifest.json); build one with "
                     "`kard retrieval build`")
  from kard_jax.retrieval import sharded_index  # pylint: disable=import-outside-toplevel

  if sharded_index.is_sharded(path):
    return sharded_index.load_sharded_index(path, expect=expect, verify=verify)
  try:
    with open(manifest_path, encoding="utf-8") as f:
      manifest = json.load(f)
    if manifest.get("format") != FORMAT:
      raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
      raise ValueError(f"format version {manifest.get('format_version')} is not "
                       f"{FORMAT_VERSION}; rebuild the index with this version")
    config = BM25Config.from_json(manifest["settings"])
    files = manifest["files"]
  except (ValueError, KeyError, TypeError) as e:
    raise InputError(manifest_path, f"unreadable manifest ({e})") from None
  for name, info in files.items():
    p = os.path.join(path, name)
    if not os.path.isfile(p):
      raise InputError(p, "index file missing; rebuild the index")
    if os.path.getsize(p) != info["bytes"]:
      raise InputError(p, f"index file has {os.path.getsize(p)} bytes, the manifest says "
                       f"{info['bytes']} (truncated or modified); rebuild the index")
    if verify and jsonl.sha256_file(p) != info["sha256"]:
      raise InputError(p, "index file checksum does not match the manifest (corrupt); rebuild "
                       "the index")
  if expect is not None:
    _check_settings(path, config, expect)
  try:
    retriever = bm25s.BM25.load(path, mmap=mmap, load_corpus=False)
    with open(os.path.join(path, TOKENIZER_FILE), encoding="utf-8") as f:
      stopwords = json.load(f)["stopwords"]
    index = BM25Index(path, config, manifest, retriever, stopwords)
  except InputError:
    raise
  except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
    raise InputError(path, f"corrupt index ({type(e).__name__}: {e}); rebuild it") from None
  return index


class BM25Index:
  """A loaded index: tokenise queries, retrieve top-k, re-score candidates, read passages."""

  def __init__(self, path: str, config: BM25Config, manifest: dict[str, Any], retriever,
               stopwords: Sequence[str]):
    self.path, self.config, self.manifest = path, config, manifest
    self.retriever = retriever  # the bm25s.BM25 object over the same arrays
    s = retriever.scores
    if len(s["indptr"]) != len(retriever.vocab_dict) + 1 or int(s["indptr"][-1]) != len(
        s["data"]) or len(s["data"]) != len(s["indices"]):
      raise ValueError("score matrix arrays do not fit together")
    self.matrix = TermMatrix(s["data"], s["indices"], s["indptr"], s["num_docs"])
    self.tokenizer = Tokenizer(config.tokenizer, vocab=retriever.vocab_dict, stopwords=stopwords)
    self.passages = PassageStore(path)
    if len(self.passages) != self.matrix.num_docs:
      raise ValueError(f"{len(self.passages)} passages but {self.matrix.num_docs} indexed")

  def __len__(self) -> int:
    return self.matrix.num_docs

  def encode(self, queries: Sequence[str]) -> list[np.ndarray]:
    return self.tokenizer.encode_queries(queries)

  def search(self, queries: Sequence[str], k: int, *, n_threads: int | None = None,
             batch_size: int = 32, show_progress: bool = False) -> list[Hits]:
    """Top-k (positions, scores) per query text, best first; only passages sharing a term."""
    from tqdm.auto import tqdm

    encoded = self.encode(queries)
    with tqdm(total=len(encoded), desc="retrieve", unit=" queries", disable=not show_progress,
              mininterval=1.0) as bar:
      return self.matrix.top_k(encoded, k, n_threads=n_threads, batch_size=batch_size,
                               progress=bar)

  def score(self, query: str, positions: Sequence[int]) -> np.ndarray:
    """BM25 scores of given passages under `query`: exactly what `search` would give them."""
    return self.matrix.scores_for(self.tokenizer.encode_query(query), np.asarray(positions))

  def close(self) -> None:
    self.passages.close()
