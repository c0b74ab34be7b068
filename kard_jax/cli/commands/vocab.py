"""`kard vocab`: train a SentencePiece vocabulary on a prepared benchmark (T5 ids)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import sentencepiece as spm

from kard_jax.data import vocab
from kard_jax.data.errors import InputError
from kard_jax.cli import flags

HELP = ("train a SentencePiece vocabulary on a benchmark's prompts, rationales and knowledge base; "
        "writes DATA_DIR/spiece.model atomically")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--data_dir", required=True,
                      help="prepared benchmark directory (examples/, kb/, rationales/)")
  parser.add_argument("--vocab_size", type=flags.positive_int, default=2000,
                      help="number of pieces (a soft limit: a small corpus may give fewer)")
  parser.add_argument("--out", default=None,
                      help="model file to write (default: DATA_DIR/spiece.model)")
  parser.add_argument("--model_type", choices=("bpe", "unigram"), default="bpe")
  parser.add_argument("--byte_fallback", action="store_true",
                      help="encode characters unseen in training as bytes instead of <unk>")
  parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
  if not os.path.isdir(os.path.join(args.data_dir, "examples")):
    raise InputError(args.data_dir, "not a prepared benchmark (no examples/ directory)")
  if args.vocab_size < 8:
    print("kard vocab: error: --vocab_size must be at least 8", file=sys.stderr)
    return 2
  path = vocab.train_benchmark_vocab(args.data_dir, args.vocab_size, args.out,
                                     model_type=args.model_type,
                                     byte_fallback=args.byte_fallback, seed=args.seed)
  pieces = spm.SentencePieceProcessor(model_file=path).get_piece_size()
  print(f"wrote {path} ({pieces} pieces)")
  print(json.dumps({"path": path, "pieces": pieces}))
  return 0
