"""SentencePiece vocabularies: T5 ids, determinism, exact round trips, loading through SeqIO."""

import argparse
import json
import os
import pathlib

import pytest
import seqio
import sentencepiece as spm

from kard_jax.data import prompts, vocab
from kard_jax.data.errors import InputError
from kard_jax.data.example import read_examples
from kard_jax.data.synthetic import SyntheticConfig, write_benchmark
from kard_jax.cli.commands import vocab as vocab_command

# Any existing T5-style model loads the same way; seqio ships a small one for its own tests.
SEQIO_SPM = (pathlib.Path(seqio.__file__).parent / "test_data" / "sentencepiece" /
             "sentencepiece.model")


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("synthetic")
  write_benchmark(SyntheticConfig(num_entities=60, num_validation=12, num_test=16, seed=1), root)
  vocab.train_benchmark_vocab(root, 400)
  return root


def test_t5_special_ids(bench_dir):
  sp = spm.SentencePieceProcessor(model_file=str(bench_dir / "spiece.model"))
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
  assert sp.id_to_piece(1) == "</s>" and sp.id_to_piece(0) == "<pad>"
  assert 100 < sp.get_piece_size() <= 400
  # Task prefixes are single pieces.
  for symbol in vocab.USER_SYMBOLS:
    assert symbol in sp.encode(symbol, out_type=str)


def test_training_is_deterministic(bench_dir, tmp_path):
  again = vocab.train_benchmark_vocab(bench_dir, 400, tmp_path / "again.model")
  assert pathlib.Path(again).read_bytes() == (bench_dir / "spiece.model").read_bytes()
  other = vocab.train_benchmark_vocab(bench_dir, 300, tmp_path / "other.model")
  assert pathlib.Path(other).read_bytes() != (bench_dir / "spiece.model").read_bytes()


def test_seqio_vocabulary_round_trips_every_prompt(bench_dir):
  v = vocab.load_vocab(bench_dir / "spiece.model")
  sp = spm.SentencePieceProcessor(model_file=str(bench_dir / "spiece.model"))
  assert v.vocab_size == sp.get_piece_size() and v.eos_id == 1 and v.pad_id == 0
  passages = [json.loads(l)["text"] for l in open(bench_dir / "kb" / "passages.jsonl")][-3:]
  for ex in read_examples(bench_dir / "examples" / "test.jsonl"):
    for method in prompts.METHODS:
      text = prompts.render_inputs(method, ex, passages=passages,
                                   rationale="A b. So, the answer is A.")
      ids = v.encode(text)
      assert ids == sp.encode(text)  # seqio's wrapper agrees with SentencePiece itself
      assert 2 not in ids, text  # no <unk>
      assert v.decode(ids) == text


def test_extra_ids_extend_an_existing_model():
  plain = vocab.load_vocab(SEQIO_SPM)
  t5_like = vocab.load_vocab(SEQIO_SPM, extra_ids=100)
  assert t5_like.vocab_size == plain.vocab_size + 100
  assert t5_like.encode("the answer") == plain.encode("the answer")


def test_byte_fallback_covers_unseen_characters(tmp_path):
  lines = ["alpha beta gamma", "beta gamma delta"] * 20
  path = vocab.train_vocab(lines, tmp_path / "b.model", 300, byte_fallback=True)
  v = vocab.load_vocab(path)
  assert v.decode(v.encode("alpha ü")) == "alpha ü"
  plain = vocab.load_vocab(vocab.train_vocab(lines, tmp_path / "p.model", 40))
  assert 2 in plain.encode("ü")


def test_empty_corpus_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="empty corpus"):
    vocab.train_vocab(["", "  "], tmp_path / "x.model", 100)


def test_command_writes_spiece_model_atomically(bench_dir, tmp_path, capsys):
  parser = argparse.ArgumentParser()
  vocab_command.add_arguments(parser)
  out = tmp_path / "out" / "spiece.model"
  args = parser.parse_args(["--data_dir", str(bench_dir), "--vocab_size", "400", "--out", str(out)])
  assert vocab_command.run(args) == 0
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert summary["path"] == str(out) and summary["pieces"] > 100
  assert out.read_bytes() == (bench_dir / "spiece.model").read_bytes()
  assert os.listdir(out.parent) == ["spiece.model"]  # no temporary files left behind


def test_command_rejects_a_directory_that_is_no_benchmark(tmp_path):
  parser = argparse.ArgumentParser()
  vocab_command.add_arguments(parser)
  with pytest.raises(InputError, match="not a prepared benchmark"):
    vocab_command.run(parser.parse_args(["--data_dir", str(tmp_path)]))
