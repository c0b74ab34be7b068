"""WordPiece tokenisation for BERT-family checkpoints, as padded numpy batches.

Uses the `tokenizers` library on the checkpoint's own `tokenizer.json` (or its `vocab.txt`), so
ids match what the checkpoint was trained with; the padding and truncation stored in
`tokenizer.json` are replaced by the arguments of `encode`.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import numpy as np

from kard_jax.data.errors import InputError


def load_tokenizer(folder):
  """A `tokenizers.Tokenizer` from `folder`'s tokenizer.json, else from its vocab.txt."""
  import tokenizers

  folder = os.fspath(folder)
  path = os.path.join(folder, "tokenizer.json")
  if os.path.isfile(path):
    try:
      return tokenizers.Tokenizer.from_file(path)
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
      raise InputError(path, f"cannot read tokenizer ({e})") from None
  vocab = os.path.join(folder, "vocab.txt")
  if not os.path.isfile(vocab):
    raise InputError(folder, "no tokenizer.json or vocab.txt in the checkpoint folder")
  lowercase = True
  config_path = os.path.join(folder, "tokenizer_config.json")
  if os.path.isfile(config_path):
    with open(config_path, encoding="utf-8") as f:
      lowercase = bool(json.load(f).get("do_lower_case", True))
  return tokenizers.BertWordPieceTokenizer(vocab, lowercase=lowercase)


def encode(tokenizer, texts: Sequence[str | tuple[str, str]], *, max_length: int = 256,
           pad_to: Optional[int] = None) -> dict[str, np.ndarray]:
  """Tokenises texts (or (text_a, text_b) pairs) with [CLS]/[SEP], truncated to `max_length`.

  Returns int32 `input_ids`, `attention_mask` and `token_type_ids` [batch, length], padded with
  the tokenizer's [PAD] to the longest sequence, or to `pad_to` for a fixed (jit-friendly) shape.
  """
  pad_id = tokenizer.token_to_id("[PAD]")
  if pad_id is None:
    raise ValueError("tokenizer has no [PAD] token")
  tokenizer.enable_truncation(max_length=min(max_length, pad_to) if pad_to else max_length)
  tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]", length=pad_to)
  encodings = tokenizer.encode_batch(list(texts))
  return {
      "input_ids": np.asarray([e.ids for e in encodings], np.int32),
      "attention_mask": np.asarray([e.attention_mask for e in encodings], np.int32),
      "token_type_ids": np.asarray([e.type_ids for e in encodings], np.int32),
  }
