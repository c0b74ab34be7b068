"""bm25s-compatible tokenisation, fast enough for millions of passages.

Produces exactly the tokens and term ids of `bm25s.tokenization.Tokenizer` (lower-case, the
scikit-learn word pattern, stop words dropped before stemming, PyStemmer stems, ids in order of
first appearance, id 0 the empty token that stands for a passage with no words left), so the
indexes we build are the ones bm25s builds from the same text.

Speed: a chunk of documents is reduced to its distinct words with C-level dict operations, each
distinct word is stemmed once per process, and the chunk comes back as (document, stem, count)
triples. That work needs no shared state, so chunks can be encoded in worker processes; only the
mapping of a chunk's distinct stems to global ids happens in the parent, in chunk order.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any, Sequence

import numpy as np

_STOPWORD_NAMES = ("english", "english_plus", "german", "dutch", "french", "spanish", "portuguese",
                   "italian", "russian", "swedish", "norwegian", "chinese", "turkish", "korean",
                   "danish")
_STEM_CACHE_LIMIT = 4_000_000  # words; ~0.5 GB per process


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
  stopwords: str | tuple[str, ...] | None = "english"  # a bm25s list name, the words, or None
  stemmer: str | None = "english"  # a PyStemmer algorithm, or None
  lower: bool = True
  pattern: str = r"(?u)\b\w\w+\b"

  def __post_init__(self):
    if isinstance(self.stopwords, list):
      object.__setattr__(self, "stopwords", tuple(self.stopwords))
    if isinstance(self.stopwords, str) and self.stopwords not in _STOPWORD_NAMES:
      raise ValueError(f"unknown stop-word list {self.stopwords!r}; choose from "
                       f"{_STOPWORD_NAMES}, give the words, or None")
    if self.stemmer is not None:
      import Stemmer  # PyStemmer

      if self.stemmer not in Stemmer.algorithms():
        raise ValueError(f"unknown stemmer {self.stemmer!r}; PyStemmer has {Stemmer.algorithms()}")

  def to_json(self) -> dict[str, Any]:
    sw = list(self.stopwords) if isinstance(self.stopwords, tuple) else self.stopwords
    return {"stopwords": sw, "stemmer": self.stemmer, "lower": self.lower, "pattern": self.pattern}

  @classmethod
  def from_json(cls, obj: dict[str, Any]) -> "TokenizerConfig":
    sw = obj.get("stopwords")
    return cls(stopwords=tuple(sw) if isinstance(sw, list) else sw, stemmer=obj.get("stemmer"),
               lower=bool(obj.get("lower", True)), pattern=obj.get("pattern", cls.pattern))


def resolve_stopwords(stopwords: str | tuple[str, ...] | None) -> tuple[str, ...]:
  """The stop words a config names, taken from bm25s's own lists."""
  if stopwords is None:
    return ()
  if isinstance(stopwords, str):
    import bm25s.tokenization

    return tuple(bm25s.tokenization.Tokenizer(stopwords=stopwords).stopwords)
  return tuple(stopwords)


@dataclasses.dataclass
class EncodedChunk:
  """A chunk of documents as (doc, stem, tf) triples, sorted by doc then first appearance."""
  stems: list[str]  # the chunk's distinct stems, in order of first appearance
  doc: np.ndarray  # int32, 0-based within the chunk
  stem: np.ndarray  # int32 index into `stems`
  tf: np.ndarray  # int32 occurrences of the stem in the document
  lengths: np.ndarray  # int32 tokens per document (1 for a document with none: the empty token)


class ChunkEncoder:
  """Stateless apart from a per-process stem cache, so it can run in worker processes."""

  def __init__(self, config: TokenizerConfig, stopwords: Sequence[str]):
    self.config = config
    self.stopwords = frozenset(stopwords)
    self._split = re.compile(config.pattern).findall
    self._stems: dict[str, str | None] = {}  # word -> stem, None for a stop word
    self._stemmer = None

  def __getstate__(self):
    return {"config": self.config, "stopwords": self.stopwords}

  def __setstate__(self, state):
    self.__init__(state["config"], state["stopwords"])

  def _stem_new(self, words: list[str]) -> None:
    keep = [w for w in words if w not in self.stopwords]
    if self.config.stemmer is None:
      stems = keep
    else:
      if self._stemmer is None:
        import Stemmer

        self._stemmer = Stemmer.Stemmer(self.config.stemmer)
      stems = self._stemmer.stemWords(keep)
    self._stems.update(dict.fromkeys(words))  # stop words stay None
    self._stems.update(zip(keep, stems))

  def __call__(self, texts: Sequence[str]) -> EncodedChunk:
    lower = self.config.lower
    words = [self._split(t.lower() if lower else t) for t in texts]
    raw_lengths = np.fromiter(map(len, words), np.int64, len(words))
    flat = list(itertools.chain.from_iterable(words))
    distinct = list(dict.fromkeys(flat))  # first-appearance order
    position = dict(zip(distinct, range(len(distinct))))
    word_idx = np.array(list(map(position.__getitem__, flat)), dtype=np.int32)
    if len(self._stems) > _STEM_CACHE_LIMIT:  # bounded memory on web-scale vocabularies
      self._stems.clear()
    new = [w for w in distinct if w not in self._stems]
    if new:
      self._stem_new(new)
    stem_of = list(map(self._stems.__getitem__, distinct))
    # Distinct stems in order of first appearance; the empty token always has local index 0.
    stems = list(dict.fromkeys(itertools.chain([""], stem_of)))
    local = dict(zip(stems, range(len(stems))))
    lut = np.fromiter(map(local.__getitem__, stem_of), np.int32, len(stem_of))
    if None in local:  # stop words
      lut[lut == local[None]] = -1
      stems.remove(None)
      lut[lut > local[None]] -= 1
    stem = lut[word_idx] if len(word_idx) else word_idx
    doc = np.repeat(np.arange(len(texts), dtype=np.int64), raw_lengths)
    keep = stem >= 0
    stem, doc = stem[keep], doc[keep]
    lengths = np.bincount(doc, minlength=len(texts)).astype(np.int32)
    empty = np.flatnonzero(lengths == 0)
    if len(empty):  # bm25s gives a document without tokens the empty token
      doc = np.concatenate([doc, empty])
      stem = np.concatenate([stem, np.zeros(len(empty), np.int32)])
      lengths[empty] = 1
    keys, tf = np.unique((doc << 32) | stem.astype(np.int64), return_counts=True)
    return EncodedChunk(stems, (keys >> 32).astype(np.int32),
                        (keys & 0xFFFFFFFF).astype(np.int32), tf.astype(np.int32), lengths)


class Tokenizer:
  """Text -> term ids over one vocabulary (stem, or word without a stemmer, -> id; "" is 0)."""

  def __init__(self, config: TokenizerConfig, vocab: dict[str, int] | None = None,
               stopwords: Sequence[str] | None = None):
    self.config = config
    self.stopwords = tuple(resolve_stopwords(config.stopwords) if stopwords is None else stopwords)
    self.vocab: dict[str, int] = {"": 0} if vocab is None else vocab
    self.encoder = ChunkEncoder(config, self.stopwords)
    self._query_cache: dict[str, int] = {}

  def globalize(self, chunk: EncodedChunk) -> np.ndarray:
    """Global term ids for a chunk's stems (new stems get the next ids, in order); per triple."""
    vocab = self.vocab
    new = [s for s in chunk.stems if s not in vocab]  # distinct, in order of first appearance
    vocab.update(zip(new, range(len(vocab), len(vocab) + len(new))))
    lut = np.fromiter(map(vocab.__getitem__, chunk.stems), np.int32, len(chunk.stems))
    return lut[chunk.stem]

  def encode_query(self, text: str) -> np.ndarray:
    """Term ids of the query's known, non-stop words, repeats kept (each occurrence counts)."""
    cache = self._query_cache
    words = self.encoder._split(text.lower() if self.config.lower else text)
    new = [w for w in dict.fromkeys(words) if w not in cache]
    if new:
      self.encoder._stem_new([w for w in new if w not in self.encoder._stems])
      for w in new:
        s = self.encoder._stems[w]
        cache[w] = -1 if s is None else self.vocab.get(s, -1)
    ids = [cache[w] for w in words]
    return np.asarray([i for i in ids if i > 0], dtype=np.int32)

  def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
    return [self.encode_query(t) for t in texts]

  def decode(self, ids: Sequence[int]) -> list[str]:
    inverse = {v: k for k, v in self.vocab.items()}
    return [inverse[int(i)] for i in ids]
