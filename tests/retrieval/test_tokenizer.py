"""Our tokenizer produces bm25s's tokens and ids."""

import bm25s
import pytest
import Stemmer

from kard_jax.retrieval.tokenizer import Tokenizer, TokenizerConfig

TEXTS = ["The RUNNING runners ran; they run daily!", "", "the of and",
         "Café naïve Ünïcode 東京 tower",
         "x y z a", "running runs 42 4th state-of-the-art", "Runners"]


@pytest.mark.parametrize("stopwords,stemmer", [("english", "english"), (None, None),
                                               (("run", "daily"), "english")])
def test_corpus_tokens_and_ids_equal_bm25s(stopwords, stemmer):
  ref = bm25s.tokenization.Tokenizer(stopwords=list(stopwords) if isinstance(stopwords, tuple)
                                     else stopwords,
                                     stemmer=Stemmer.Stemmer(stemmer) if stemmer else None)
  want = ref.tokenize(TEXTS, show_progress=False, update_vocab=True)
  tok = Tokenizer(TokenizerConfig(stopwords=stopwords, stemmer=stemmer))
  got = [[] for _ in TEXTS]
  for start in (0, 3):  # two chunks: ids must continue across chunks
    chunk = tok.encoder(TEXTS[start:start + 3] if start == 0 else TEXTS[3:])
    terms = tok.globalize(chunk)
    for d, t, f in zip(chunk.doc, terms, chunk.tf):
      got[start + d].extend([int(t)] * int(f))
    for d, n in enumerate(chunk.lengths):
      assert n == len(want[start + d])
  assert [sorted(g) for g in got] == [sorted(w) for w in want]
  assert tok.vocab == ref.get_vocab_dict()


def test_queries_drop_unknown_and_stop_words_and_keep_repeats():
  tok = Tokenizer(TokenizerConfig())
  tok.globalize(tok.encoder(["running castles near harbors"]))
  q = tok.encode_query("The castle RUNS to the castle, unknownword")
  assert tok.decode(q) == ["castl", "run", "castl"]
  assert len(tok.encode_query("the of zzz")) == 0
  assert len(tok.vocab) == 5  # queries never grow the vocabulary


def test_bad_settings_are_rejected():
  with pytest.raises(ValueError, match="stop-word"):
    TokenizerConfig(stopwords="klingon")
  with pytest.raises(ValueError, match="stemmer"):
    TokenizerConfig(stemmer="klingon")
  cfg = TokenizerConfig(stopwords=["a", "b"])
  assert TokenizerConfig.from_json(cfg.to_json()) == cfg
