"""Hugging Face T5 files in and out: tree layout, export round trips, and errors that name tensors."""

import json
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from kard_jax.data.errors import InputError
from kard_jax.models import t5, t5_weights
from tests.models import t5_reference as ref


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
  """variant -> (HF model, its save_pretrained folder)."""
  return {v: (hf, ref.save(hf, tmp_path_factory.mktemp(v)))
          for v in ref.VARIANTS for hf in [ref.hf_model(v, seed=3)]}


@pytest.mark.parametrize("scan_layers", [False, True])
@pytest.mark.parametrize("variant", list(ref.VARIANTS))
def test_converted_tree_is_the_models_tree(hf_folders, variant, scan_layers):
  _, folder = hf_folders[variant]
  cfg, params = t5_weights.load_hf(folder, param_dtype="bfloat16", scan_layers=scan_layers)
  assert cfg.scan_layers == scan_layers and t5.is_scanned(params) == scan_layers
  feed_forward, _, untied_head = ref.VARIANTS[variant]
  assert cfg.feed_forward == feed_forward and cfg.tie_word_embeddings == (not untied_head)
  assert cfg.scales_decoder_outputs == (variant == "original_tied")
  model_tree = jax.eval_shape(lambda: t5.init_params(t5.Transformer(cfg), jax.random.PRNGKey(0)))
  assert jax.tree.structure(params) == jax.tree.structure(model_tree)
  for ours, model in zip(jax.tree.leaves(params), jax.tree.leaves(model_tree)):
    assert ours.shape == model.shape and ours.dtype == model.dtype == jnp.bfloat16


@pytest.mark.parametrize("scan_layers", [False, True])
@pytest.mark.parametrize("variant", list(ref.VARIANTS))
def test_export_round_trip_through_transformers(hf_folders, tmp_path, variant, scan_layers):
  _, folder = hf_folders[variant]
  cfg, params = t5_weights.load_hf(folder, scan_layers=scan_layers)
  # Our own weights (not the ones just read), so the exported head really is ours.
  rng = np.random.RandomState(1)
  params = jax.tree.map(lambda x: x + 0.05 * rng.randn(*x.shape).astype(x.dtype), params)
  t5_weights.export_hf(cfg, params, tmp_path / "out")
  hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
  enc, dec_in, tgt = ref.padded_batch()
  ours = np.asarray(jax.jit(lambda p: t5.Transformer(cfg).apply(
      {"params": p}, enc, dec_in, tgt, enable_dropout=False))(params))
  expected = ref.hf_logits(hf, enc, dec_in, tgt)
  valid = tgt > 0
  np.testing.assert_allclose(ours[valid], expected[valid], atol=1e-4, rtol=1e-4)
  cfg_back, params_back = t5_weights.load_hf(tmp_path / "out", dropout_rate=cfg.dropout_rate,
                                             scan_layers=scan_layers)
  assert cfg_back == cfg
  for a, b in zip(jax.tree.leaves(params_back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)


def test_export_accepts_boxed_device_arrays(hf_folders, tmp_path):
  _, folder = hf_folders["original_tied"]
  cfg, params = t5_weights.load_hf(folder)
  boxed = jax.tree.map(lambda x: nn.LogicallyPartitioned(jnp.asarray(x), ("a",) * x.ndim), params)
  t5_weights.export_hf(cfg, boxed, tmp_path / "out")
  written = load_file(str(tmp_path / "out" / "model.safetensors"))
  original = load_file(str(folder) + "/model.safetensors")
  assert set(written) == set(original)  # tied and scaled: no lm_head, as transformers writes it
  for name, value in original.items():
    np.testing.assert_array_equal(written[name], value)


def _copy_with(folder, tmp_path, edit_tensors=None, edit_config=None):
  out = tmp_path / "edited"
  shutil.copytree(folder, out)
  if edit_tensors:
    tensors = load_file(str(out / "model.safetensors"))
    edit_tensors(tensors)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
  if edit_config:
    config = json.loads((out / "config.json").read_text())
    edit_config(config)
    (out / "config.json").write_text(json.dumps(config))
  return out


NAME = "decoder.block.1.layer.2.DenseReluDense.wi_1.weight"


def test_missing_tensor_is_named(hf_folders, tmp_path):
  folder = _copy_with(hf_folders["v1_1_untied"][1], tmp_path, lambda t: t.pop(NAME))
  with pytest.raises(InputError, match=f"no tensor '{NAME}'") as e:
    t5_weights.load_hf(folder)
  assert e.value.path == str(folder)


def test_misshaped_tensor_is_named_with_both_shapes(hf_folders, tmp_path):
  def shrink(t):
    t[NAME] = t[NAME][:, :-1].copy()
  folder = _copy_with(hf_folders["v1_1_untied"][1], tmp_path, shrink)
  with pytest.raises(InputError, match=rf"'{NAME}' has shape \(64, 31\), expected \(64, 32\)"):
    t5_weights.load_hf(folder)


def test_unexpected_and_inconsistent_tensors_are_errors(hf_folders, tmp_path):
  def extra(t):
    t["decoder.block.2.layer.0.layer_norm.weight"] = np.ones(32, np.float32)
  folder = _copy_with(hf_folders["v1_1_untied"][1], tmp_path, extra)
  with pytest.raises(InputError, match="no place.*decoder.block.2.layer.0.layer_norm.weight"):
    t5_weights.load_hf(folder)

  def embed_copy(t):
    t["encoder.embed_tokens.weight"] = t["shared.weight"] + 1
  folder = _copy_with(hf_folders["original_tied"][1], tmp_path / "b", embed_copy)
  with pytest.raises(InputError, match="'encoder.embed_tokens.weight' differs"):
    t5_weights.load_hf(folder)


def test_config_problems_are_errors(hf_folders, tmp_path):
  folder = _copy_with(hf_folders["v1_1_untied"][1], tmp_path,
                      edit_config=lambda c: c.update(model_type="bert"))
  with pytest.raises(InputError, match="model_type is 'bert'"):
    t5_weights.load_hf(folder)
  folder = _copy_with(hf_folders["v1_1_untied"][1], tmp_path / "b",
                      edit_config=lambda c: c.update(feed_forward_proj="gated-silu"))
  with pytest.raises(InputError, match="gated-silu"):
    t5_weights.load_hf(folder)
  with pytest.raises(InputError, match="config.json"):
    t5_weights.load_hf(tmp_path / "nowhere")


def test_unscaled_tied_export_also_reads_right_in_older_transformers(hf_folders, tmp_path):
  # Before 5.x, tie_word_embeddings=False meant "unscaled, with its own lm_head.weight".
  _, folder = hf_folders["v1_1_tied_unscaled"]
  cfg, params = t5_weights.load_hf(folder)
  t5_weights.export_hf(cfg, params, tmp_path / "out")
  config = json.loads((tmp_path / "out" / "config.json").read_text())
  written = load_file(str(tmp_path / "out" / "model.safetensors"))
  assert config["tie_word_embeddings"] is False and config["scale_decoder_outputs"] is False
  np.testing.assert_array_equal(written["lm_head.weight"], written["shared.weight"])
  hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "out")
  assert hf.lm_head.weight.data_ptr() == hf.shared.weight.data_ptr()  # 5.x ties it back
  assert torch.equal(hf.shared.weight, torch.from_numpy(np.asarray(params["token_embedder"][
      "embedding"])))
