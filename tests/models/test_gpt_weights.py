"""GPT-2 weights in and out: parity with transformers' GPT2LMHeadModel through our converter."""

import functools

import flax
import jax
import numpy as np
import pytest
import torch
import transformers

from kard_jax.data.errors import InputError
from kard_jax.models import gpt, gpt_weights, hf_io

B, L = 3, 10
VOCAB = 53


def _hf_model(tie: bool, seed: int = 0):
  torch.manual_seed(seed)
  config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=32, n_layer=2,
                                   n_head=4, n_inner=48, tie_word_embeddings=tie,
                                   bos_token_id=0, eos_token_id=1)
  model = transformers.GPT2LMHeadModel(config).eval()
  with torch.no_grad():  # move every weight off its initial value (LayerNorms start at 1 and 0)
    for p in model.parameters():
      p.add_(0.2 * torch.randn_like(p))
  return model


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def hf_folder(request, tmp_path_factory):
  folder = tmp_path_factory.mktemp("gpt2")
  model = _hf_model(request.param)
  model.save_pretrained(folder)
  return folder, model


def _batch():
  """T5X-style features on a right-padded batch: targets, inputs shifted behind id 0."""
  rng = np.random.RandomState(0)
  lengths = np.array([L, 6, 3])
  valid = np.arange(L)[None] < lengths[:, None]
  targets = rng.randint(1, VOCAB, size=(B, L)).astype(np.int32) * valid
  inputs = np.concatenate([np.zeros((B, 1), np.int32), targets[:, :-1]], axis=1)
  return inputs, targets, valid


@functools.partial(jax.jit, static_argnames="cfg")
def _forward(params, inputs, targets, cfg):
  return gpt.GPT(cfg).apply({"params": params}, inputs, targets, enable_dropout=False)


def _hf_logits(model, inputs, valid):
  with torch.no_grad():
    return model(input_ids=torch.tensor(inputs, dtype=torch.long),
                 attention_mask=torch.tensor(valid, dtype=torch.long)).logits.numpy()


def test_logits_match_transformers_on_a_padded_batch(hf_folder):
  folder, model = hf_folder
  cfg, params = gpt_weights.load_hf(folder)
  assert cfg.tie_embeddings == model.config.tie_word_embeddings
  inputs, targets, valid = _batch()
  ours = np.asarray(_forward(params, inputs, targets, cfg))
  reference = _hf_logits(model, inputs, valid)
  assert np.abs(reference[valid]).max() > 1.0  # the comparison is not between near-zeros
  np.testing.assert_allclose(ours[valid], reference[valid], atol=1e-4, rtol=0)


def test_converted_tree_is_the_module_tree(hf_folder):
  folder, _ = hf_folder
  cfg, params = gpt_weights.load_hf(folder)
  ids = jax.numpy.zeros((1, 4), jax.numpy.int32)
  shapes = jax.eval_shape(lambda: gpt.GPT(cfg).init(jax.random.PRNGKey(0), ids, ids,
                                                    enable_dropout=False))["params"]
  expected = {k: (v.shape, v.dtype) for k, v in flax.traverse_util.flatten_dict(shapes).items()}
  got = {k: (v.shape, v.dtype) for k, v in flax.traverse_util.flatten_dict(params).items()}
  assert got == expected


def test_bare_gpt2model_names_load_the_same_weights(hf_folder, tmp_path):
  folder, _ = hf_folder
  tensors = hf_io.read_tensors(folder).tensors
  bare = {k.removeprefix("transformer."): v for k, v in tensors.items()}
  hf_io.write_checkpoint(tmp_path, hf_io.read_config(folder), bare)
  _, expected = gpt_weights.load_hf(folder)
  _, params = gpt_weights.load_hf(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, params, expected)


@pytest.mark.parametrize("tie", [True, False])
def test_export_round_trips_through_transformers(tie, tmp_path):
  cfg = gpt.GPTConfig(vocab_size=VOCAB, emb_dim=32, num_heads=4, num_layers=2, mlp_dim=48,
                      max_positions=16, tie_embeddings=tie)
  ids = jax.numpy.zeros((1, 4), jax.numpy.int32)
  shapes = jax.eval_shape(lambda: gpt.GPT(cfg).init(jax.random.PRNGKey(0), ids, ids,
                                                    enable_dropout=False))["params"]
  rng = np.random.RandomState(3)
  params = jax.tree.map(lambda s: (0.2 * rng.randn(*s.shape)).astype(np.float32), shapes)
  gpt_weights.export_hf(cfg, {"params": params}, tmp_path)

  model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
  assert model.config.eos_token_id == 1 and model.config.pad_token_id == 0
  inputs, targets, valid = _batch()
  ours = np.asarray(_forward(params, inputs, targets, cfg))
  np.testing.assert_allclose(ours[valid], _hf_logits(model, inputs, valid)[valid], atol=1e-4,
                             rtol=0)

  loaded_cfg, loaded = gpt_weights.load_hf(tmp_path)
  assert loaded_cfg == cfg
  jax.tree.map(np.testing.assert_array_equal, loaded, params)


def _rewrite(folder, out, edit):
  tensors = dict(hf_io.read_tensors(folder).tensors)
  edit(tensors)
  hf_io.write_checkpoint(out, hf_io.read_config(folder), tensors)


def test_missing_tensor_is_named(hf_folder, tmp_path):
  folder, _ = hf_folder
  _rewrite(folder, tmp_path, lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"))
  with pytest.raises(InputError, match=r"transformer\.h\.1\.mlp\.c_fc\.bias"):
    gpt_weights.load_hf(tmp_path)


def test_misshaped_tensor_is_named(hf_folder, tmp_path):
  folder, _ = hf_folder
  def transpose(t):
    t["transformer.h.0.attn.c_attn.weight"] = np.ascontiguousarray(
        t["transformer.h.0.attn.c_attn.weight"].T)
  _rewrite(folder, tmp_path, transpose)
  with pytest.raises(InputError, match=r"transformer\.h\.0\.attn\.c_attn\.weight.*\(96, 32\)"):
    gpt_weights.load_hf(tmp_path)


def test_unsupported_configuration_is_refused():
  with pytest.raises(InputError, match="scale_attn_by_inverse_layer_idx"):
    gpt_weights.config_from_hf({"model_type": "gpt2", "scale_attn_by_inverse_layer_idx": True})
  with pytest.raises(InputError, match="model_type"):
    gpt_weights.config_from_hf({"model_type": "bert"})
  with pytest.raises(InputError, match="n_embd"):
    gpt_weights.config_from_hf({"model_type": "gpt2", "vocab_size": 8})
