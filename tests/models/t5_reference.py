"""Shared by the T5 tests: tiny `transformers` reference models and padded batches."""

from __future__ import annotations

import numpy as np
import torch
import transformers

VOCAB = 128

# name -> (feed_forward_proj, tie_word_embeddings, untied head in the file)
VARIANTS = {
    "v1_1_untied": ("gated-gelu", False, True),
    "original_tied": ("relu", True, False),
    # What transformers 5.x makes of a v1.1 config: head tied to `shared`, outputs unscaled.
    "v1_1_tied_unscaled": ("gated-gelu", False, False),
}


def hf_model(variant: str, seed: int = 0) -> transformers.T5ForConditionalGeneration:
  feed_forward, tie, untied_head = VARIANTS[variant]
  config = transformers.T5Config(
      vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
      num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=16,
      feed_forward_proj=feed_forward, tie_word_embeddings=tie, dropout_rate=0.0)
  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(config)
  # Random init gives norms of exactly one; perturb them so a misplaced norm shows up.
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "layer_norm" in name:
        p.add_(0.1 * torch.randn_like(p))
    if untied_head:
      model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 32))
  return model.eval()


def save(model, folder) -> str:
  model.save_pretrained(folder)
  return str(folder)


def padded_batch(seed: int = 0, lengths=((12, 9), (7, 5), (3, 2), (10, 1)), src_len: int = 12,
                 tgt_len: int = 9):
  """Right-padded (encoder tokens, decoder inputs, decoder targets); one row per (src, tgt) length."""
  rng = np.random.RandomState(seed)
  batch = len(lengths)
  enc = rng.randint(2, VOCAB, (batch, src_len)).astype(np.int32)
  tgt = rng.randint(2, VOCAB, (batch, tgt_len)).astype(np.int32)
  for row, (s, t) in enumerate(lengths):
    enc[row, s:] = 0
    tgt[row, t:] = 0
  dec_in = np.concatenate([np.zeros((batch, 1), np.int32), tgt[:, :-1]], axis=1)
  dec_in = np.where(tgt > 0, dec_in, 0)
  return enc, dec_in, tgt


def hf_logits(model, enc, dec_in, tgt) -> np.ndarray:
  with torch.no_grad():
    out = model(input_ids=torch.tensor(enc, dtype=torch.long),
                attention_mask=torch.tensor(enc > 0, dtype=torch.long),
                decoder_input_ids=torch.tensor(dec_in, dtype=torch.long),
                decoder_attention_mask=torch.tensor(tgt > 0, dtype=torch.long))
  return out.logits.numpy()
