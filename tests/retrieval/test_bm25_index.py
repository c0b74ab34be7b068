"""The BM25 index: parity with bm25s, save/reload, settings and corruption checks."""

import json
import math
import os
import shutil

import bm25s
import numpy as np
import pytest
import Stemmer

from kard_jax.data.errors import InputError
from kard_jax.retrieval.bm25_index import BM25Config, build_index, load_index
from kard_jax.retrieval.passages import Passage
from kard_jax.retrieval.tokenizer import TokenizerConfig


def _reference(passages, k1=0.9, b=0.4, stopwords="english", stemmer="english"):
  """bm25s's own tokenizer and indexer over the same texts."""
  tok = bm25s.tokenization.Tokenizer(
      stopwords=stopwords, stemmer=Stemmer.Stemmer(stemmer) if stemmer else None)
  ids = tok.tokenize([p.index_text() for p in passages], show_progress=False, update_vocab=True)
  ref = bm25s.BM25(k1=k1, b=b, method="lucene")
  ref.index((ids, tok.get_vocab_dict()), show_progress=False)
  return ref, tok


def test_index_equals_bm25s_bit_for_bit(passages, index_dir, tmp_path):
  ref, _ = _reference(passages)
  chunked = build_index(passages, tmp_path / "chunked", chunk_size=37, show_progress=False)
  index = load_index(index_dir)
  for built in (index, chunked):
    assert built.retriever.vocab_dict == ref.vocab_dict
    for key in ("data", "indices", "indptr"):
      np.testing.assert_array_equal(np.asarray(built.retriever.scores[key]), ref.scores[key])
  chunked.close()
  assert index.retriever.k1 == 0.9 and index.retriever.b == 0.4  # Lucene's, not bm25s's 1.5/0.75
  # bm25s can open our directory itself.
  own = bm25s.BM25.load(str(index_dir), mmap=True)
  np.testing.assert_array_equal(own.scores["data"], ref.scores["data"])
  index.close()


def test_scores_follow_the_lucene_formula_on_a_toy_corpus(tmp_path):
  docs = [Passage("0", "", "cat cat dog"), Passage("1", "", "dog bird"), Passage("2", "", "fish")]
  config = BM25Config(k1=1.2, b=0.75, tokenizer=TokenizerConfig(stopwords=None, stemmer=None))
  index = build_index(docs, tmp_path / "i", config, show_progress=False)
  avgdl, n = 2.0, 3
  def bm25(tf, dl, df):
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))
  got = index.matrix.all_scores(index.tokenizer.encode_query("cat dog"))
  want = [bm25(2, 3, 1) + bm25(1, 3, 2), bm25(1, 2, 2), 0.0]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  index.close()


def test_workers_build_the_same_index(tmp_path, passages):
  a = build_index(passages, tmp_path / "a", chunk_size=64, show_progress=False)
  b = build_index(passages, tmp_path / "b", chunk_size=64, workers=2, show_progress=False)
  for key in ("data", "indices", "indptr"):
    np.testing.assert_array_equal(a.retriever.scores[key], b.retriever.scores[key])
  assert a.retriever.vocab_dict == b.retriever.vocab_dict
  assert a.manifest["corpus_sha256"] == b.manifest["corpus_sha256"]


def test_saved_and_reloaded_index_returns_identical_results(tmp_path, passages, queries):
  index = build_index(passages, tmp_path / "i", show_progress=False)
  before = index.search(queries, 10, n_threads=1)
  index.close()
  for mmap in (True, False):
    again = load_index(tmp_path / "i", mmap=mmap, verify=True)
    after = again.search(queries, 10, n_threads=2, batch_size=7)
    assert len(before) == len(after)
    for (p1, s1), (p2, s2) in zip(before, after):
      np.testing.assert_array_equal(p1, p2)
      np.testing.assert_array_equal(s1, s2)
    assert again.passages[int(after[0][0][0])] == passages[int(after[0][0][0])]
    again.close()
  lines = (tmp_path / "i" / "passages.jsonl").read_text(encoding="utf-8").splitlines()
  assert lines == [json.dumps(p.to_json(), ensure_ascii=False) for p in passages]


def test_rebuild_replaces_an_index_and_refuses_other_directories(tmp_path, passages):
  build_index(passages[:10], tmp_path / "i", show_progress=False).close()
  index = build_index(passages[:20], tmp_path / "i", show_progress=False)
  assert len(index) == 20 and not [p for p in os.listdir(tmp_path) if p.startswith(".")]
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("keep me")
  with pytest.raises(InputError, match="not an index"):
    build_index(passages, tmp_path / "other", show_progress=False)
  with pytest.raises(InputError, match="duplicate passage id"):
    build_index(passages[:3] + passages[:1], tmp_path / "dup", show_progress=False)
  assert not (tmp_path / "dup").exists()


def test_loading_with_other_settings_is_a_clear_error(index_dir):
  with pytest.raises(InputError) as e:
    load_index(index_dir, expect=BM25Config(k1=1.5))
  assert "k1=0.9 (requested 1.5)" in e.value.message and e.value.path.endswith("manifest.json")
  stem = BM25Config(tokenizer=TokenizerConfig(stemmer=None))
  with pytest.raises(InputError, match="tokenizer.stemmer='english'"):
    load_index(index_dir, expect=stem)
  load_index(index_dir, expect=BM25Config()).close()


@pytest.fixture()
def copy(tmp_path, index_dir):
  dst = tmp_path / "copy"
  shutil.copytree(index_dir, dst)
  return dst


def test_missing_truncated_and_corrupt_files_are_clear_errors(copy):
  data = copy / "data.csc.index.npy"
  raw = data.read_bytes()
  data.write_bytes(raw[:-8])
  with pytest.raises(InputError, match="truncated"):
    load_index(copy)
  flipped = bytearray(raw)
  flipped[-3] ^= 0xFF
  data.write_bytes(bytes(flipped))
  load_index(copy).close()  # same size: only the checksum can tell
  with pytest.raises(InputError, match="checksum"):
    load_index(copy, verify=True)
  header = bytearray(raw)
  header[:6] = b"garbag"
  data.write_bytes(bytes(header))
  with pytest.raises(InputError, match="corrupt index"):
    load_index(copy)
  os.remove(copy / "vocab.index.json")
  with pytest.raises(InputError, match="missing"):
    load_index(copy)


def test_not_an_index_and_bad_manifest(tmp_path, copy):
  with pytest.raises(InputError, match="not a BM25 index"):
    load_index(tmp_path)
  manifest = json.loads((copy / "manifest.json").read_text())
  manifest["format_version"] = 99
  (copy / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(InputError, match="format version 99"):
    load_index(copy)
  (copy / "manifest.json").write_text("{not json")
  with pytest.raises(InputError, match="unreadable manifest"):
    load_index(copy)
