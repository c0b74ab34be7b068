"""Tiny fixtures for reranker tests: a random 2-layer BERT checkpoint and a small benchmark.

The checkpoint is a real Hugging Face folder (config.json, model.safetensors, vocab.txt) written by
`transformers`, so the same weights load into PyTorch for parity checks and into our code through
the converter.
"""

from __future__ import annotations

import os
import re

from kard_jax.data import synthetic

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                 max_position_embeddings=128, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0)
SYNTHETIC = synthetic.SyntheticConfig(
    num_entities=24, num_cities=6, num_countries=4, num_continents=4, hops=(2,),
    num_validation=8, num_test=8, rationales_per_question=2, train_questions_per_entity=1)


def write_benchmark(root: str) -> str:
  """DATA/synthetic with examples, kb/passages.jsonl and rationales; returns the directory."""
  out = os.path.join(root, "synthetic")
  synthetic.write_benchmark(SYNTHETIC, out)
  return out


def _words(data_dir: str) -> list[str]:
  text = []
  for name in ("kb/passages.jsonl", "examples/train.jsonl", "examples/validation.jsonl",
               "examples/test.jsonl", "rationales/train.jsonl"):
    with open(os.path.join(data_dir, name), encoding="utf-8") as f:
      text.append(f.read().lower())
  return sorted(set(re.findall(r"[a-z0-9]+", " ".join(text))))


def write_bert(folder: str, data_dir: str, seed: int = 0) -> str:
  """A random tiny BERT whose vocabulary covers the benchmark's words (plus punctuation)."""
  import torch
  import transformers

  os.makedirs(folder, exist_ok=True)
  vocab = SPECIAL + list(".,?!'\"#:-()") + _words(data_dir)
  with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")
  torch.manual_seed(seed)
  config = transformers.BertConfig(vocab_size=len(vocab), **TINY_BERT)
  model = transformers.BertModel(config, add_pooling_layer=False).eval()
  model.save_pretrained(folder, safe_serialization=True)
  return folder


def build_index(data_dir: str):
  from kard_jax.retrieval import bm25_index
  from kard_jax.retrieval.passages import read_passages

  return bm25_index.build_index(read_passages(os.path.join(data_dir, "kb", "passages.jsonl")),
                                os.path.join(data_dir, "index"), show_progress=False)
