"""BERT-family weights in: parity with transformers' BertModel through our converter."""

import functools

import jax
import numpy as np
import pytest
import torch
import transformers

from kard_jax.data.errors import InputError
from kard_jax.models import bert, bert_weights, hf_io

VOCAB = 61


def _hf_config(**overrides):
  return transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=48,
                                 max_position_embeddings=20, type_vocab_size=3, **overrides)


def _perturb(model):
  with torch.no_grad():  # move every weight off its initial value (LayerNorms start at 1 and 0)
    for p in model.parameters():
      p.add_(0.2 * torch.randn_like(p))
  return model.eval()


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
  torch.manual_seed(0)
  folder = tmp_path_factory.mktemp("bert")
  model = _perturb(transformers.BertModel(_hf_config()))
  model.save_pretrained(folder)
  return folder, model


def _batch():
  rng = np.random.RandomState(0)
  lengths = np.array([12, 7, 2])
  mask = (np.arange(12)[None] < lengths[:, None]).astype(np.int32)
  ids = rng.randint(1, VOCAB, size=(3, 12)).astype(np.int32) * mask
  types = rng.randint(0, 3, size=(3, 12)).astype(np.int32) * mask
  return ids, mask, types


@functools.partial(jax.jit, static_argnames="cfg")
def _encode(params, ids, mask, types, cfg):
  out = bert.Bert(cfg).apply({"params": params}, ids, mask, types, enable_dropout=False)
  return out.hidden_states, out.pooled


def _reference(model, ids, mask, types):
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long),
                token_type_ids=torch.tensor(types, dtype=torch.long))
  return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def test_hidden_states_and_pooler_match_transformers_on_a_padded_batch(hf_folder):
  folder, model = hf_folder
  cfg, params = bert_weights.load_hf(folder)
  assert cfg.pooler and cfg.type_vocab_size == 3 and cfg.layer_norm_eps == 1e-12
  ids, mask, types = _batch()
  hidden, pooled = _encode(params, ids, mask, types, cfg)
  ref_hidden, ref_pooled = _reference(model, ids, mask, types)
  valid = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(hidden)[valid], ref_hidden[valid], atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(pooled), ref_pooled, atol=1e-4, rtol=0)


def test_task_checkpoints_with_bert_prefix_load(tmp_path):
  """BertForMaskedLM names its encoder `bert.*`, has no pooler and carries an MLM head."""
  torch.manual_seed(1)
  model = _perturb(transformers.BertForMaskedLM(_hf_config()))
  model.save_pretrained(tmp_path)
  assert any(k.startswith("bert.") for k in hf_io.read_tensors(tmp_path).tensors)
  cfg, params = bert_weights.load_hf(tmp_path)
  assert not cfg.pooler and "pooler" not in params
  ids, mask, types = _batch()
  hidden, _ = _encode(params, ids, mask, types, cfg)
  with torch.no_grad():
    ref = model.bert(input_ids=torch.tensor(ids, dtype=torch.long),
                     attention_mask=torch.tensor(mask, dtype=torch.long),
                     token_type_ids=torch.tensor(types, dtype=torch.long)).last_hidden_state
  valid = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(hidden)[valid], ref.numpy()[valid], atol=1e-4, rtol=0)


def test_tensorflow_era_gamma_beta_names_load(hf_folder, tmp_path):
  folder, _ = hf_folder
  tensors = hf_io.read_tensors(folder).tensors
  renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                       "LayerNorm.beta"): v
             for k, v in tensors.items()}
  assert renamed != tensors
  hf_io.write_checkpoint(tmp_path, hf_io.read_config(folder), renamed)
  _, expected = bert_weights.load_hf(folder)
  _, params = bert_weights.load_hf(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, params, expected)


def _rewrite(folder, out, edit):
  tensors = dict(hf_io.read_tensors(folder).tensors)
  edit(tensors)
  hf_io.write_checkpoint(out, hf_io.read_config(folder), tensors)


def test_missing_tensor_is_named(hf_folder, tmp_path):
  folder, _ = hf_folder
  _rewrite(folder, tmp_path, lambda t: t.pop("encoder.layer.1.attention.self.key.weight"))
  with pytest.raises(InputError, match=r"encoder\.layer\.1\.attention\.self\.key\.weight"):
    bert_weights.load_hf(tmp_path)


def test_misshaped_tensor_is_named(hf_folder, tmp_path):
  folder, _ = hf_folder
  def shrink(t):
    t["encoder.layer.0.intermediate.dense.weight"] = t[
        "encoder.layer.0.intermediate.dense.weight"][:40].copy()
  _rewrite(folder, tmp_path, shrink)
  name = r"encoder\.layer\.0\.intermediate\.dense\.weight"
  with pytest.raises(InputError, match=name + r".*\(40, 32\)"):
    bert_weights.load_hf(tmp_path)


def test_unsupported_configuration_is_refused():
  base = _hf_config().to_dict()
  with pytest.raises(InputError, match="position_embedding_type"):
    bert_weights.config_from_hf({**base, "position_embedding_type": "relative_key"})
  with pytest.raises(InputError, match="hidden_size"):
    bert_weights.config_from_hf({k: v for k, v in base.items() if k != "hidden_size"})
  with pytest.raises(InputError, match="model_type"):
    bert_weights.config_from_hf({**base, "model_type": "roberta"})
