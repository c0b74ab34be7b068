"""WordPiece batches equal transformers' BertTokenizerFast on the packaged MiniLM vocabulary."""

import shutil

import numpy as np
import transformers

from kard_jax.models import bert_tokenizer, minilm

TEXTS = ["Hello, World! Naïve café-au-lait.", "What is the capital of France?", "x" * 3]
PAIRS = [("which organelle makes ATP?", "The mitochondria is the powerhouse of the cell."),
         ("short", "pair")]


def _reference(folder, texts, **kwargs):
  tokenizer = transformers.BertTokenizerFast.from_pretrained(folder)
  if isinstance(texts[0], tuple):
    out = tokenizer([a for a, _ in texts], [b for _, b in texts], **kwargs)
  else:
    out = tokenizer(texts, **kwargs)
  return {k: np.asarray(v) for k, v in out.items()}


def _check(ours, reference):
  assert set(ours) == set(reference)
  for key in ours:
    np.testing.assert_array_equal(ours[key], reference[key], err_msg=key)
    assert ours[key].dtype == np.int32


def test_texts_and_pairs_match_transformers():
  folder = minilm.packaged_minilm_dir()
  tokenizer = bert_tokenizer.load_tokenizer(folder)
  _check(bert_tokenizer.encode(tokenizer, TEXTS), _reference(folder, TEXTS, padding=True))
  _check(bert_tokenizer.encode(tokenizer, PAIRS, max_length=12),
         _reference(folder, PAIRS, padding=True, truncation=True, max_length=12))
  fixed = bert_tokenizer.encode(tokenizer, TEXTS, pad_to=24)
  _check(fixed, _reference(folder, TEXTS, padding="max_length", max_length=24))


def test_vocab_txt_alone_gives_the_same_ids(tmp_path):
  folder = minilm.packaged_minilm_dir()
  for name in ("vocab.txt", "tokenizer_config.json"):
    shutil.copy(f"{folder}/{name}", tmp_path / name)
  from_vocab = bert_tokenizer.encode(bert_tokenizer.load_tokenizer(tmp_path), TEXTS + PAIRS)
  from_json = bert_tokenizer.encode(bert_tokenizer.load_tokenizer(folder), TEXTS + PAIRS)
  _check(from_vocab, from_json)
