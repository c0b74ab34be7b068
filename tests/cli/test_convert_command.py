"""`kard convert`: Hugging Face -> Orbax -> Hugging Face through the command line."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import transformers
from safetensors.numpy import load_file

from kard_jax.models import params_io, t5, t5_weights
from kard_jax.cli import main as cli
from tests.models import t5_reference as ref


def test_t5_round_trip_through_the_command_line(tmp_path, capsys):
  hf = ref.hf_model("v1_1_untied", seed=5)
  hf_dir = ref.save(hf, tmp_path / "hf")
  assert cli.main(["convert", "hf-to-flax", "--model", "t5", "--hf_dir", hf_dir,
                   "--out", str(tmp_path / "flax")]) == 0
  description = params_io.read_model_config(tmp_path / "flax")
  assert description["family"] == "t5"
  cfg = t5.T5Config(**description["config"])
  expected_cfg, expected = t5_weights.load_hf(hf_dir)
  assert cfg == expected_cfg
  restored = params_io.restore(tmp_path / "flax")
  assert jax.tree.structure(restored) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), b)

  assert cli.main(["convert", "flax-to-hf", "--model", "t5", "--flax_dir", str(tmp_path / "flax"),
                   "--out", str(tmp_path / "back")]) == 0
  back = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "back").eval()
  batch = ref.padded_batch()
  valid = batch[2] > 0
  np.testing.assert_allclose(ref.hf_logits(back, *batch)[valid], ref.hf_logits(hf, *batch)[valid],
                             atol=1e-6)

  # A training run's layout: MODEL_DIR/model_config.json, MODEL_DIR/checkpoint_<step>/params.
  run_dir = tmp_path / "run"
  params_io.save(run_dir / "checkpoint_5" / "params", restored)
  (run_dir / "model_config.json").write_text(json.dumps(description))
  assert cli.main(["convert", "flax-to-hf", "--model", "t5", "--flax_dir",
                   str(run_dir / "checkpoint_5" / "params"), "--out", str(tmp_path / "run_hf")]) == 0
  exported = load_file(str(tmp_path / "run_hf" / "model.safetensors"))
  for name, value in load_file(str(tmp_path / "back" / "model.safetensors")).items():
    np.testing.assert_array_equal(exported[name], value)


def test_bfloat16_storage_is_recorded(tmp_path):
  hf_dir = ref.save(ref.hf_model("original_tied"), tmp_path / "hf")
  assert cli.main(["convert", "hf-to-flax", "--model", "t5", "--hf_dir", hf_dir,
                   "--out", str(tmp_path / "flax"), "--param_dtype", "bfloat16"]) == 0
  restored = params_io.restore(tmp_path / "flax")
  assert {x.dtype for x in jax.tree.leaves(restored)} == {jnp.dtype(jnp.bfloat16)}
  config = params_io.read_model_config(tmp_path / "flax")["config"]
  assert config["param_dtype"] == "bfloat16" and config["tie_word_embeddings"] is True


def test_bad_inputs_exit_2_naming_the_file(tmp_path, capsys):
  assert cli.main(["convert", "hf-to-flax", "--model", "t5", "--hf_dir", str(tmp_path / "none"),
                   "--out", str(tmp_path / "flax")]) == 2
  assert f"error: {tmp_path / 'none'}" in capsys.readouterr().err
  params_io.save(tmp_path / "gpt", {"w": np.zeros(2, np.float32)})
  (tmp_path / "gpt" / params_io.MODEL_CONFIG).write_text(json.dumps({"family": "gpt",
                                                                      "config": {}}))
  assert cli.main(["convert", "flax-to-hf", "--model", "t5", "--flax_dir", str(tmp_path / "gpt"),
                   "--out", str(tmp_path / "out")]) == 2
  assert "describes a 'gpt' model, not 't5'" in capsys.readouterr().err


def test_gpt2_and_bert_go_through_their_converters(tmp_path):
  import torch

  torch.manual_seed(0)
  gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=ref.VOCAB, n_positions=16, n_embd=32, n_layer=2, n_head=4)).eval()
  gpt2.save_pretrained(tmp_path / "gpt2")
  assert cli.main(["convert", "hf-to-flax", "--model", "gpt2", "--hf_dir", str(tmp_path / "gpt2"),
                   "--out", str(tmp_path / "gpt2_flax")]) == 0
  assert params_io.read_model_config(tmp_path / "gpt2_flax")["family"] == "gpt"
  assert cli.main(["convert", "flax-to-hf", "--model", "gpt2", "--flax_dir",
                   str(tmp_path / "gpt2_flax"), "--out", str(tmp_path / "gpt2_back")]) == 0
  back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2_back").eval()
  tokens = torch.tensor(ref.padded_batch()[0][:, :8], dtype=torch.long).clamp(min=1)
  with torch.no_grad():
    np.testing.assert_allclose(back(tokens).logits.numpy(), gpt2(tokens).logits.numpy(), atol=1e-5)

  bert = transformers.BertModel(transformers.BertConfig(
      vocab_size=ref.VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
      intermediate_size=64, max_position_embeddings=16))
  bert.save_pretrained(tmp_path / "bert")
  assert cli.main(["convert", "hf-to-flax", "--model", "bert", "--hf_dir", str(tmp_path / "bert"),
                   "--out", str(tmp_path / "bert_flax")]) == 0
  assert params_io.read_model_config(tmp_path / "bert_flax")["family"] == "bert"
  restored = params_io.restore(tmp_path / "bert_flax")
  np.testing.assert_array_equal(np.asarray(restored["token_embedder"]["embedding"]),
                                bert.embeddings.word_embeddings.weight.detach().numpy())


def test_scanned_layout_round_trip_through_the_command_line(tmp_path):
  hf = ref.hf_model("v1_1_untied", seed=6)
  hf_dir = ref.save(hf, tmp_path / "hf")
  assert cli.main(["convert", "hf-to-flax", "--model", "t5", "--hf_dir", hf_dir, "--scan_layers",
                   "--out", str(tmp_path / "flax")]) == 0
  assert params_io.read_model_config(tmp_path / "flax")["config"]["scan_layers"] is True
  restored = params_io.restore(tmp_path / "flax")
  assert t5.is_scanned(restored)
  assert restored["encoder"]["layers"]["mlp"]["wo"]["kernel"].shape[0] == 2
  assert cli.main(["convert", "flax-to-hf", "--model", "t5", "--flax_dir", str(tmp_path / "flax"),
                   "--out", str(tmp_path / "back")]) == 0
  original = load_file(str(tmp_path / "hf" / "model.safetensors"))
  back = load_file(str(tmp_path / "back" / "model.safetensors"))
  assert "decoder.block.1.layer.2.DenseReluDense.wo.weight" in back
  for name, value in back.items():
    np.testing.assert_array_equal(value, original[name], err_msg=name)
  assert cli.main(["convert", "hf-to-flax", "--model", "gpt2", "--hf_dir", hf_dir, "--scan_layers",
                   "--out", str(tmp_path / "x")]) == 2
