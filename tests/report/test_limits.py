"""Model FLOP counts against PyTorch's own matmul FLOP counter, peaks and the measured limits."""

import tempfile

import flax.linen as nn
import jax
import numpy as np
import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from kard_jax.models import t5, t5_weights
from kard_jax.report import limits


@pytest.mark.parametrize("feed_forward", ["gated-gelu", "relu"])
def test_t5_forward_flops_match_torch_flop_counter(feed_forward):
  config = t5.T5Config.tiny(feed_forward=feed_forward, dropout_rate=0.0, num_decoder_layers=3)
  params = nn.meta.unbox(t5.init_params(t5.Transformer(config), jax.random.key(0)))
  with tempfile.TemporaryDirectory() as folder:
    t5_weights.export_hf(config, params, folder)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(
        folder, attn_implementation="eager").eval()  # attention as matmuls the counter sees
  batch, input_length, target_length = 3, 11, 5
  ids = torch.ones((batch, input_length), dtype=torch.long)
  labels = torch.ones((batch, target_length), dtype=torch.long)
  with torch.no_grad(), FlopCounterMode(display=False) as counter:
    hf(input_ids=ids, labels=labels)
  assert limits.t5_forward_flops(config, batch, input_length, target_length) == \
      counter.get_total_flops()


def test_bert_forward_flops_match_torch_flop_counter():
  config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=48,
                                   attn_implementation="eager")
  model = transformers.BertModel(config, add_pooling_layer=False).eval()
  with torch.no_grad(), FlopCounterMode(display=False) as counter:
    model(input_ids=torch.ones((3, 7), dtype=torch.long))
  assert limits.bert_forward_flops(2, 32, 48, 7, 3) == counter.get_total_flops()


def test_published_peaks_by_device_kind():
  assert limits.published_peak("NVIDIA H100 80GB HBM3")["bf16"] == 989e12
  assert limits.published_peak("NVIDIA H100 PCIe")["bf16"] == 756e12
  assert limits.published_peak("TPU v5 lite")["bf16"] == 197e12
  assert limits.published_peak("TPU v4")["bandwidth"] == 1.2e12
  assert limits.published_peak("cpu") is None


def test_measured_limits_and_fractions():
  measured = limits.measure(2 * 2**20, 64, repeats=1)
  assert measured["platform"] == "cpu" and measured["bandwidth_array_bytes"] == 2 * 2**20
  assert measured["bandwidth_bytes_per_s"] > 1e6 and measured["matmul_flops_per_s"] > 1e6
  assert "published_peak" not in measured  # no peak for a CPU
  fake = {**measured, "published_peak": {"fp32": 4e9, "bf16": 8e9, "bandwidth": 1e9}}
  assert limits.mfu(2e9, fake) == {
      "fraction_of_measured_matmul": 2e9 / measured["matmul_flops_per_s"],
      "mfu_vs_published_fp32_peak": 0.5, "mfu_vs_published_bf16_peak": 0.25}
  assert limits.bandwidth_fraction(5e8, fake)["fraction_of_published_bandwidth"] == 0.5
  tree = {"a": {"k": np.zeros((2, 3), np.float32)}, "b": np.zeros(4, np.int8)}
  assert limits.tree_bytes(tree) == 28
  assert limits.tree_bytes(tree, lambda path: path[0] == "a") == 24
