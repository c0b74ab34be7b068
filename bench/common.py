"""Helpers shared by the bench/*.py scripts: the synthetic retrieval corpus and core pinning.

Imported as `from bench import common` (each script puts the repository root on sys.path).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

WORDS_PER_PASSAGE = 100  # DPR's passages are 100-word windows
QUERY_WORDS = 10


def pseudo_words(rng: np.random.Generator, n: int) -> np.ndarray:
  """n distinct pronounceable pseudo-words of 2-5 syllables."""
  syllables = np.array([c + v for c in "bcdfghjklmnprstvz" for v in "aeiou"])
  out = np.zeros(0, dtype="<U16")
  while len(out) < n:
    m = 2 * n
    k = rng.integers(2, 6, size=m)
    parts = syllables[rng.integers(0, len(syllables), size=(m, 5))]
    w = parts[:, 0]
    for j in range(1, 5):
      w = np.where(k > j, np.char.add(w, parts[:, j]), w)
    out = np.unique(np.concatenate([out, w]))
  return rng.permutation(out)[:n]


def zipf_vocabulary(rng: np.random.Generator, vocab_size: int,
                    zipf_s: float) -> tuple[np.ndarray, np.ndarray]:
  """English stop words at the top ranks (~40% of tokens, as in English), then `vocab_size`
  pseudo-words; returns (words as an object array, cumulative Zipf probabilities)."""
  from bm25s.stopwords import STOPWORDS_EN

  stop = np.array(sorted(set(STOPWORDS_EN)))
  vocab = np.concatenate([stop[rng.permutation(len(stop))], pseudo_words(rng, vocab_size)])
  cdf = np.cumsum(np.arange(1, len(vocab) + 1, dtype=np.float64) ** -zipf_s)
  return vocab.astype(object), cdf / cdf[-1]


def write_corpus(path: str, n: int, seed: int = 0, vocab_size: int = 300_000,
                 zipf_s: float = 1.1) -> None:
  """`n` DPR-like passages of exactly 100 Zipfian words as kb/passages.jsonl lines ({id, title,
  text}); the first m passages of a larger corpus are the corpus of size m (same seed)."""
  rng = np.random.default_rng(seed)
  vocab, cdf = zipf_vocabulary(rng, vocab_size, zipf_s)
  with open(path, "w", encoding="utf-8") as f:
    for start in range(0, n, 50_000):  # bounded memory
      m = min(50_000, n - start)
      words = vocab[np.searchsorted(cdf, rng.random(m * WORDS_PER_PASSAGE))]
      words = words.reshape(m, WORDS_PER_PASSAGE)
      f.writelines(f'{{"id": "p{start + i}", "title": "", "text": "{" ".join(row)}"}}\n'
                   for i, row in enumerate(words))


def sample_queries(path: str, n_passages: int, n: int, seed: int = 1) -> list[str]:
  """`n` queries of 10 words drawn from random passages among the first `n_passages` of a
  passages file (stop words included, as questions have them)."""
  rng = np.random.default_rng(seed)
  wanted = set(rng.choice(n_passages, size=min(n, n_passages), replace=False).tolist())
  texts = []
  with open(path, encoding="utf-8") as f:
    for i, line in enumerate(f):
      if i >= n_passages:
        break
      if i in wanted:
        texts.append(json.loads(line)["text"].split())
  return [" ".join(rng.choice(w, size=QUERY_WORDS, replace=False)) for w in texts]


def make_work_dir(parser: argparse.ArgumentParser, path: str | None) -> str | None:
  """Creates --work_dir if it is missing; a one-line error (exit 2) if it cannot be."""
  if path is None:
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    parser.error(f"--work_dir {path}: cannot create it ({e.strerror})")
  if not os.access(path, os.W_OK):
    parser.error(f"--work_dir {path}: not writable")
  return path


def pin_cores(parser: argparse.ArgumentParser, threads: int) -> int:
  """Restricts this process to its first `threads` cores (0: leave as is) before JAX or PyTorch
  create their thread pools; returns the number of cores it may use."""
  cores = sorted(os.sched_getaffinity(0))
  if threads > len(cores):
    parser.error(f"--threads {threads}: only {len(cores)} cores are available")
  if threads > 0:
    os.sched_setaffinity(0, cores[:threads])
  return len(os.sched_getaffinity(0))
