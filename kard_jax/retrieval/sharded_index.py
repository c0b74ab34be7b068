"""A BM25 index split into shards, scoring exactly as one big index would.

Built in one streaming pass over the corpus and a second pass over spilled term counts:
  1. passages stream into shard directories (`shard_size` each) and are tokenised; every chunk's
     (passage, term, count) triples go to a temporary file on disk, while the corpus-wide
     statistics accumulate in memory: the vocabulary, document frequencies and passage lengths;
  2. each shard's score matrix is built from its spilled triples with the *global* idf and average
     length, so every (term, passage) score is the one the unsharded index holds, bit for bit.
Memory is the global statistics plus one shard's matrix; the corpus is never held.

Queries are tokenised once, each shard returns its top-k (threads over query batches, the sparse
products run without the GIL), and the shards' lists are merged by (score descending, position
ascending): the unsharded index's order, so ids and scores equal its own, ties included.

Layout:
  manifest.json       format "kard-bm25-sharded": settings, shards (first position, size), totals
  vocab.index.json, tokenizer.json   the global vocabulary and stop words
  shard_00000/        data.npy, indices.npy, indptr.npy (term x passage CSR over the global
                      vocabulary, shard-local positions) and the shard's passages files
`load_index` opens either kind of index; positions are global (shard's first + local position).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError
from kard_jax.retrieval import bm25_index
from kard_jax.retrieval.bm25_index import BM25Config
from kard_jax.retrieval.passages import Passage, PassageStore, PassageWriter
from kard_jax.retrieval.scoring import (Hits, TermMatrix, default_threads, map_in_threads,
                                        select_top_k)
from kard_jax.retrieval.tokenizer import Tokenizer

FORMAT = "kard-bm25-sharded"
FORMAT_VERSION = 1
VOCAB_FILE = "vocab.index.json"
_MATRIX = ("data.npy", "indices.npy", "indptr.npy")


def shard_name(i: int) -> str:
  return f"shard_{i:05d}"


def is_sharded(path: str) -> bool:
  try:
    with open(os.path.join(path, bm25_index.MANIFEST), encoding="utf-8") as f:
      return json.load(f).get("format") == FORMAT
  except (OSError, ValueError, AttributeError):
    return False


class _ShardedWriter:
  """Routes passages to one PassageWriter per shard; ids must be unique over all shards."""

  def __init__(self, root: str, shard_size: int, source: str):
    self.root, self.shard_size, self.source = root, shard_size, source
    self.writers: list[PassageWriter] = []
    self.shas: list[str] = []
    self.count = 0
    self._seen: set[str] = set()
    self.corpus_sha = hashlib.sha256()  # of the shards' passages files, concatenated in order

  def add(self, passage: Passage) -> None:
    if passage.id in self._seen:
      raise InputError(self.source, f"duplicate passage id {passage.id!r}")
    self._seen.add(passage.id)
    if self.count % self.shard_size == 0:
      self._close_current()
      directory = os.path.join(self.root, shard_name(len(self.writers)))
      os.makedirs(directory)
      self.writers.append(PassageWriter(directory, self.source, also_hash=self.corpus_sha))
    self.writers[-1].add(passage)
    self.count += 1

  def _close_current(self) -> None:
    if len(self.shas) < len(self.writers):
      self.shas.append(self.writers[-1].close())

  def close(self) -> str:
    self._close_current()
    self._seen.clear()
    return self.corpus_sha.hexdigest()


def build_sharded_index(passages: Iterable[Passage], out_dir, config: BM25Config = BM25Config(),
                        *, shard_size: int, workers: int = 0, chunk_size: int = 20_000,
                        show_progress: bool = True, source: str = "<passages>"
                        ) -> "ShardedBM25Index":
  """Streams passages into a sharded index directory (replacing an older index atomically)."""
  from tqdm.auto import tqdm

  if shard_size < 1:
    raise ValueError(f"shard_size must be positive, got {shard_size}")
  out_dir = os.path.abspath(os.fspath(out_dir))
  bm25_index._prepare_target(out_dir)  # pylint: disable=protected-access
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
  spill = os.path.join(tmp, "spill")
  os.makedirs(spill)
  try:
    writer = _ShardedWriter(tmp, shard_size, source)
    tokenizer = Tokenizer(config.tokenizer)
    df = np.zeros(1024, np.int64)
    shard_df: list[np.ndarray] = []  # postings per term within each shard
    shard_chunks: list[list[tuple[str, int, int]]] = []  # (spill file, first, passages)
    lengths = []
    n = 0
    # Pass 1: stream, tokenise, spill triples, count corpus-wide statistics.
    with tqdm(desc="index (pass 1)", unit=" passages", disable=not show_progress,
              mininterval=1.0) as bar:
      for chunk in bm25_index._encoded_chunks(  # pylint: disable=protected-access
          passages, writer, tokenizer.encoder, config, workers, chunk_size, boundary=shard_size):
        term = tokenizer.globalize(chunk)
        size = len(chunk.lengths)
        if len(tokenizer.vocab) > len(df):
          df = np.concatenate([df, np.zeros(max(len(df), len(tokenizer.vocab)), np.int64)])
        counts = np.bincount(term, minlength=len(df))
        df += counts
        shard = n // shard_size
        if shard == len(shard_df):
          shard_df.append(np.zeros(len(df), np.int64))
          shard_chunks.append([])
        if len(shard_df[shard]) < len(df):
          shard_df[shard] = np.concatenate(
              [shard_df[shard], np.zeros(len(df) - len(shard_df[shard]), np.int64)])
        shard_df[shard] += counts
        tf = chunk.tf.astype(np.uint16) if chunk.tf.max(initial=0) < 1 << 16 else chunk.tf
        nnz = np.bincount(chunk.doc, minlength=size).astype(np.int32)
        path = os.path.join(spill, f"chunk_{len(lengths):06d}.npz")
        np.savez(path, nnz=nnz, term=term, tf=tf)
        shard_chunks[shard].append((path, n, size))
        lengths.append(chunk.lengths)
        n += size
        bar.update(size)
    corpus_sha = writer.close()
    if n == 0:
      raise InputError(source, "no passages to index")
    vocab_size = len(tokenizer.vocab)
    length = np.concatenate(lengths)
    del lengths
    avgdl = bm25_index.average_length(length)
    idf = bm25_index.lucene_idf(df[:vocab_size], n)

    # Pass 2: each shard's matrix from its spilled triples, with the global idf and avgdl.
    shards = []
    for i, chunks in enumerate(tqdm(shard_chunks, desc="index (pass 2)", unit=" shards",
                                    disable=not show_progress)):
      first, count = chunks[0][1], sum(c[2] for c in chunks)
      sdf = np.zeros(vocab_size, np.int64)
      sdf[:min(len(shard_df[i]), vocab_size)] = shard_df[i][:vocab_size]
      scores = bm25_index.scatter_scores(_load_chunks(chunks), length[first:first + count], sdf,
                                         idf, avgdl, config.k1, config.b, first=first)
      directory = os.path.join(tmp, shard_name(i))
      for name, key in zip(_MATRIX, ("data", "indices", "indptr")):
        np.save(os.path.join(directory, name), scores[key])
      shards.append({"dir": shard_name(i), "first": int(first), "num_passages": int(count),
                     "nnz": int(len(scores["data"])), "passages_sha256": writer.shas[i]})
      del scores
    shutil.rmtree(spill)
    with open(os.path.join(tmp, VOCAB_FILE), "w", encoding="utf-8") as f:
      json.dump(tokenizer.vocab, f, ensure_ascii=False)
    with open(os.path.join(tmp, bm25_index.TOKENIZER_FILE), "w", encoding="utf-8") as f:
      json.dump({"stopwords": list(tokenizer.stopwords)}, f, ensure_ascii=False)
    files = {}
    for root, _, names in os.walk(tmp):
      for name in sorted(names):
        p = os.path.join(root, name)
        files[os.path.relpath(p, tmp)] = {"bytes": os.path.getsize(p),
                                          "sha256": jsonl.sha256_file(p)}
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "settings": config.to_json(),
        "versions": bm25_index._versions(),  # pylint: disable=protected-access
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source, "num_passages": n, "num_shards": len(shards), "shard_size": shard_size,
        "vocab_size": vocab_size, "nnz": sum(s["nnz"] for s in shards),
        "avg_doc_len": float(avgdl), "corpus_sha256": corpus_sha, "shards": shards,
        "files": dict(sorted(files.items()))}
    with open(os.path.join(tmp, bm25_index.MANIFEST), "w", encoding="utf-8") as f:
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
  return load_sharded_index(out_dir)


def _load_chunks(chunks: Sequence[tuple[str, int, int]]) -> Iterator[Any]:
  for path, first, _ in chunks:
    with np.load(path) as z:
      triples = bm25_index._Triples(first, z["nnz"], z["term"], z["tf"])  # pylint: disable=protected-access
    os.remove(path)
    yield triples


def load_sharded_index(path, *, expect: BM25Config | None = None,
                       verify: bool = False) -> "ShardedBM25Index":
  """Opens a sharded index directory, checking it as `bm25_index.load_index` checks one index."""
  path = os.path.abspath(os.fspath(path))
  manifest_path = os.path.join(path, bm25_index.MANIFEST)
  try:
    with open(manifest_path, encoding="utf-8") as f:
      manifest = json.load(f)
    if manifest.get("format") != FORMAT:
      raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
      raise ValueError(f"format version {manifest.get('format_version')} is not "
                       f"{FORMAT_VERSION}; rebuild the index with this version")
    config = BM25Config.from_json(manifest["settings"])
    files, shards = manifest["files"], manifest["shards"]
  except (OSError, ValueError, KeyError, TypeError) as e:
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
    bm25_index._check_settings(path, config, expect)  # pylint: disable=protected-access
  try:
    return ShardedBM25Index(path, config, manifest, shards)
  except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
    raise InputError(path, f"corrupt index ({type(e).__name__}: {e}); rebuild it") from None


class ShardedPassages:
  """The shards' passages as one store, by global position or id."""

  def __init__(self, stores: Sequence[PassageStore], firsts: np.ndarray):
    self._stores, self._firsts = list(stores), firsts

  def __len__(self) -> int:
    return int(self._firsts[-1]) + len(self._stores[-1])

  def __getitem__(self, i: int) -> Passage:
    i = int(i)
    if not 0 <= i < len(self):
      raise IndexError(i)
    s = int(np.searchsorted(self._firsts, i, side="right")) - 1
    return self._stores[s][i - int(self._firsts[s])]

  def __iter__(self) -> Iterator[Passage]:
    for store in self._stores:
      yield from store

  def position(self, passage_id: str) -> int:
    for first, store in zip(self._firsts.tolist(), self._stores):
      try:
        return first + store.position(passage_id)
      except KeyError:
        continue
    raise KeyError(f"passage id {passage_id!r} is not in the sharded index")

  def close(self) -> None:
    for store in self._stores:
      store.close()


class ShardedBM25Index:
  """A loaded sharded index; the interface of `bm25_index.BM25Index` with global positions."""

  def __init__(self, path: str, config: BM25Config, manifest: dict[str, Any],
               shards: Sequence[dict[str, Any]]):
    self.path, self.config, self.manifest = path, config, manifest
    with open(os.path.join(path, VOCAB_FILE), encoding="utf-8") as f:
      vocab = json.load(f)
    with open(os.path.join(path, bm25_index.TOKENIZER_FILE), encoding="utf-8") as f:
      stopwords = json.load(f)["stopwords"]
    self.tokenizer = Tokenizer(config.tokenizer, vocab=vocab, stopwords=stopwords)
    self.matrices, stores = [], []
    for shard in shards:
      directory = os.path.join(path, shard["dir"])
      data, indices, indptr = (np.load(os.path.join(directory, name), mmap_mode="r")
                               for name in _MATRIX)
      if (len(indptr) != len(vocab) + 1 or int(indptr[-1]) != len(data)
          or len(data) != len(indices)):
        raise ValueError(f"{shard['dir']}: score matrix arrays do not fit the vocabulary")
      self.matrices.append(TermMatrix(data, indices, indptr, shard["num_passages"]))
      stores.append(PassageStore(directory))
      if len(stores[-1]) != shard["num_passages"]:
        raise ValueError(f"{shard['dir']}: {len(stores[-1])} passages, the manifest says "
                         f"{shard['num_passages']}")
    self.firsts = np.asarray([s["first"] for s in shards], np.int64)
    self.passages = ShardedPassages(stores, self.firsts)

  def __len__(self) -> int:
    return len(self.passages)

  def encode(self, queries: Sequence[str]) -> list[np.ndarray]:
    return self.tokenizer.encode_queries(queries)

  def search(self, queries: Sequence[str], k: int, *, n_threads: int | None = None,
             batch_size: int = 32, show_progress: bool = False) -> list[Hits]:
    """Top-k (global positions, scores) per query, best first: the unsharded index's answer."""
    encoded = self.encode(queries)
    return self.top_k(encoded, k, n_threads=n_threads, batch_size=batch_size,
                      show_progress=show_progress)

  def top_k(self, encoded: Sequence[np.ndarray], k: int, *, n_threads: int | None = None,
            batch_size: int = 32, show_progress: bool = False) -> list[Hits]:
    from tqdm.auto import tqdm

    if k < 1:
      raise ValueError(f"k must be positive, got {k}")
    n_threads = default_threads() if n_threads is None else n_threads
    starts = range(0, len(encoded), batch_size)
    jobs = [(s, b) for s in range(len(self.matrices)) for b in starts]

    with tqdm(total=len(jobs), desc="retrieve", unit=" batches", disable=not show_progress,
              mininterval=1.0) as bar:
      def run(job):
        s, b = job
        hits = self.matrices[s]._top_k_batch(encoded[b:b + batch_size], k)  # pylint: disable=protected-access
        bar.update(1)
        return hits

      results = map_in_threads(run, jobs, n_threads)
    per_shard: list[list[Hits]] = [[] for _ in self.matrices]
    for (s, _), hits in zip(jobs, results):
      per_shard[s].extend(hits)
    return [merge_hits([(self.firsts[s] + per_shard[s][q][0], per_shard[s][q][1])
                        for s in range(len(self.matrices))], k)
            for q in range(len(encoded))]

  def score(self, query: str, positions: Sequence[int]) -> np.ndarray:
    """BM25 scores of given passages (global positions): exactly what `search` gives them."""
    positions = np.asarray(positions, np.int64)
    if len(positions) and (positions.min() < 0 or positions.max() >= len(self)):
      raise IndexError(f"positions outside [0, {len(self)})")
    encoded = self.tokenizer.encode_query(query)
    out = np.zeros(len(positions), np.float32)
    shard = np.searchsorted(self.firsts, positions, side="right") - 1
    for s in np.unique(shard).tolist():
      mask = shard == s
      out[mask] = self.matrices[s].scores_for(encoded, positions[mask] - self.firsts[s])
    return out

  def close(self) -> None:
    self.passages.close()


def merge_hits(parts: Sequence[Hits], k: int) -> Hits:
  """The k best of several shards' top-k lists (score descending, then position ascending)."""
  positions = np.concatenate([np.asarray(p, np.int64) for p, _ in parts])
  scores = np.concatenate([np.asarray(s, np.float32) for _, s in parts])
  return select_top_k(positions, scores, k)
