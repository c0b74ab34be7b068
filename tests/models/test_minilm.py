"""The packaged all-MiniLM-L6-v2: found, loaded, and embedding sentences as transformers does."""

import os

import jax
import numpy as np
import torch
import transformers

from kard_jax.models import bert, bert_tokenizer, bert_weights, minilm

SENTENCES = [
    "Aspirin irreversibly inhibits cyclooxygenase, reducing thromboxane synthesis.",
    "Which organelle produces most of the cell's ATP?",
    "The mitochondria is the powerhouse of the cell.",
    "Paris is the capital and most populous city of France.",
    "A child presents with a barking cough and inspiratory stridor.",
]


def test_packaged_dir_holds_the_checkpoint():
  folder = minilm.packaged_minilm_dir()
  for name in minilm.REQUIRED_FILES:
    assert os.path.isfile(os.path.join(folder, name)), name


def test_sentence_embeddings_match_transformers():
  folder = minilm.packaged_minilm_dir()
  cfg, params = bert_weights.load_hf(folder)
  assert (cfg.num_layers, cfg.emb_dim) == (6, 384)
  batch = bert_tokenizer.encode(bert_tokenizer.load_tokenizer(folder), SENTENCES)
  assert batch["attention_mask"].min() == 0  # the batch really is padded

  @jax.jit
  def embed(params, ids, mask, types):
    out = bert.Bert(cfg).apply({"params": params}, ids, mask, types, enable_dropout=False)
    return bert.sentence_embedding(out.hidden_states, mask)

  ours = np.asarray(embed(params, batch["input_ids"], batch["attention_mask"],
                          batch["token_type_ids"]))

  model = transformers.BertModel.from_pretrained(folder).eval()
  with torch.no_grad():
    hidden = model(**{k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()})
  mask = torch.tensor(batch["attention_mask"])[..., None].float()
  pooled = (hidden.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
  reference = torch.nn.functional.normalize(pooled, dim=-1).numpy()

  cosine = np.sum(ours * reference, axis=-1)
  assert cosine.min() > 0.9999, cosine
  # Different sentences stay different: the check is not passed by a constant embedding.
  assert np.abs(ours @ ours.T - np.eye(len(SENTENCES))).max() < 0.95
  assert (ours[1] @ ours[2]) > (ours[1] @ ours[3])  # ATP question is closer to mitochondria
