"""Hugging Face T5 checkpoints (config.json + *.safetensors) to our parameter tree, and back.

One table maps each of our parameters to its Hugging Face tensor, so loading and exporting cannot
drift apart. PyTorch linear weights are (out, in) and ours are (in, out); the relative position table
is (buckets, heads) there and (heads, buckets) here (T5X's layout).

Tied heads, as `transformers` 5.x writes them: `save_pretrained` always ties, so `lm_head.weight` and
`*.embed_tokens.weight` may be absent (then `shared.weight` is the head), and whether the decoder output
is scaled by d_model**-0.5 is `scale_decoder_outputs` in config.json (older files: `tie_word_embeddings`).
A checkpoint whose `lm_head.weight` differs from `shared.weight` (Flan-T5 as released) has an untied head.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np

from kard_jax.data.errors import InputError
from kard_jax.models import hf_io
from kard_jax.models import t5 as t5_lib
from kard_jax.models.t5 import T5Config

_IGNORED = {
    # Created by older transformers versions and never used by the model.
    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
}


def _entries(cfg: T5Config) -> Iterator[tuple[tuple[str, ...], str, tuple[int, ...], bool]]:
  """(our path, HF name, our shape, transpose?) for every parameter of `cfg`'s model."""
  d, inner, ff = cfg.d_model, cfg.num_heads * cfg.head_dim, cfg.d_ff
  yield ("token_embedder", "embedding"), "shared.weight", (cfg.vocab_size, d), False

  def attention(ours, hf):
    for name, short in (("query", "q"), ("key", "k"), ("value", "v")):
      yield ours + (name, "kernel"), f"{hf}.{short}.weight", (d, inner), True
    yield ours + ("out", "kernel"), f"{hf}.o.weight", (inner, d), True

  def mlp(ours, hf):
    names = ("wi_0", "wi_1") if cfg.feed_forward == "gated-gelu" else ("wi",)
    for name in names:
      yield ours + (name, "kernel"), f"{hf}.DenseReluDense.{name}.weight", (d, ff), True
    yield ours + ("wo", "kernel"), f"{hf}.DenseReluDense.wo.weight", (ff, d), True

  def norm(ours, hf):
    yield ours + ("scale",), f"{hf}.weight", (d,), False

  for stack, num_layers in (("encoder", cfg.num_encoder_layers),
                            ("decoder", cfg.num_decoder_layers)):
    yield ((stack, "relpos_bias", "rel_embedding"),
           f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
           (cfg.num_heads, cfg.relative_attention_num_buckets), True)
    for i in range(num_layers):
      ours, hf = (stack, f"layers_{i}"), f"{stack}.block.{i}.layer"
      if stack == "encoder":
        yield from norm(ours + ("pre_attention_layer_norm",), f"{hf}.0.layer_norm")
        yield from attention(ours + ("attention",), f"{hf}.0.SelfAttention")
        yield from norm(ours + ("pre_mlp_layer_norm",), f"{hf}.1.layer_norm")
        yield from mlp(ours + ("mlp",), f"{hf}.1")
      else:
        yield from norm(ours + ("pre_self_attention_layer_norm",), f"{hf}.0.layer_norm")
        yield from attention(ours + ("self_attention",), f"{hf}.0.SelfAttention")
        yield from norm(ours + ("pre_cross_attention_layer_norm",), f"{hf}.1.layer_norm")
        yield from attention(ours + ("encoder_decoder_attention",), f"{hf}.1.EncDecAttention")
        yield from norm(ours + ("pre_mlp_layer_norm",), f"{hf}.2.layer_norm")
        yield from mlp(ours + ("mlp",), f"{hf}.2")
    norm_name = "encoder_norm" if stack == "encoder" else "decoder_norm"
    yield from norm((stack, norm_name), f"{stack}.final_layer_norm")
  if not cfg.tie_word_embeddings:
    yield ("decoder", "logits_dense", "kernel"), "lm_head.weight", (d, cfg.vocab_size), True


def config_from_hf(hf: dict[str, Any], path: str, *, untied_head: bool, **overrides) -> T5Config:
  """Our config from a parsed config.json; `untied_head`: the file has its own lm_head.weight."""
  if hf.get("model_type", "t5") != "t5":
    raise InputError(path, f"model_type is {hf['model_type']!r}, expected 't5'")
  required = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")
  missing = [k for k in required if k not in hf]
  if missing:
    raise InputError(path, f"config.json lacks {', '.join(missing)}")
  feed_forward = hf.get("feed_forward_proj", "relu")
  if feed_forward not in ("gated-gelu", "relu"):
    raise InputError(path, f"feed_forward_proj {feed_forward!r} is not supported "
                     "(expected 'gated-gelu' or 'relu')")
  scale = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True))
  fields = dict(
      vocab_size=hf["vocab_size"], d_model=hf["d_model"], num_heads=hf["num_heads"],
      head_dim=hf["d_kv"], num_encoder_layers=hf["num_layers"],
      num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"], d_ff=hf["d_ff"],
      dropout_rate=hf.get("dropout_rate", 0.1),
      relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
      feed_forward=feed_forward, tie_word_embeddings=not untied_head,
      scale_decoder_outputs=bool(scale), layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6))
  fields.update(overrides)
  return T5Config(**fields)


def config_to_hf(cfg: T5Config) -> dict[str, Any]:
  """config.json for `transformers`. `tie_word_embeddings` is written as "outputs are scaled", the
  meaning every transformers version gives it; 5.x also reads `scale_decoder_outputs`."""
  scale = cfg.scales_decoder_outputs
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
      "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "d_kv": cfg.head_dim,
      "d_ff": cfg.d_ff, "num_layers": cfg.num_encoder_layers,
      "num_decoder_layers": cfg.num_decoder_layers, "num_heads": cfg.num_heads,
      "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
      "relative_attention_max_distance": cfg.relative_attention_max_distance,
      "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": cfg.layer_norm_epsilon,
      "feed_forward_proj": cfg.feed_forward, "is_encoder_decoder": True, "pad_token_id": 0,
      "eos_token_id": 1, "decoder_start_token_id": 0, "tie_word_embeddings": scale,
      "scale_decoder_outputs": scale, "dtype": "float32",
  }


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree, path: tuple[str, ...], where: str):
  for key in path:
    try:
      tree = tree[key]
    except (KeyError, TypeError):
      raise KeyError(f"parameter tree has no {'/'.join(path)} ({where})") from None
  return tree


def load_hf(folder, **config_overrides) -> tuple[T5Config, dict]:
  """Reads a Hugging Face T5 folder -> (T5Config, params: nested dict of numpy arrays).

  The arrays are stored in the config's `param_dtype`; `config_overrides` (e.g. dtype="bfloat16",
  dropout_rate=0.0, scan_layers=True) replace fields of the config read from config.json; with
  scan_layers the tree has the scanned layout (each stack's layers stacked under `layers`). Raises InputError naming the
  tensor for a missing or mis-shaped one, and for tensors the model has no place for.
  """
  folder = os.fspath(folder)
  hf = hf_io.read_config(folder)
  tensors = hf_io.read_tensors(folder)
  untied = ("lm_head.weight" in tensors and "shared.weight" in tensors
            and not np.array_equal(tensors.tensors["lm_head.weight"],
                                   tensors.tensors["shared.weight"]))
  cfg = config_from_hf(hf, os.path.join(folder, "config.json"), untied_head=untied,
                       **config_overrides)
  dtype = cfg.storage_dtype
  params: dict = {}
  for ours, name, shape, transpose in _entries(cfg):
    hf_shape = shape[::-1] if transpose else shape
    value = tensors.take(name, hf_shape)
    _set(params, ours, np.asarray(value.T if transpose else value).astype(dtype))
  # Copies of the shared embedding that older versions wrote: accepted when equal to it.
  shared = tensors.tensors["shared.weight"]
  for name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
    if name in tensors and name not in tensors.used:
      if not np.array_equal(tensors.take(name, shared.shape), shared):
        raise InputError(folder, f"tensor {name!r} differs from 'shared.weight'; this model "
                         "shares one embedding")
  leftovers = [n for n in tensors.unused() if n not in _IGNORED]
  if leftovers:
    more = f" (and {len(leftovers) - 5} more)" if len(leftovers) > 5 else ""
    raise InputError(folder, f"tensors with no place in a T5 model of this config: "
                     f"{', '.join(leftovers[:5])}{more}")
  if cfg.scan_layers:
    params = t5_lib.stack_layers(params, cfg)
  return cfg, params


def export_hf(cfg: T5Config, params, folder) -> None:
  """Writes `params` (plain or logically boxed, on any devices; unrolled or scanned layout) as a
  `transformers` T5 folder."""
  import flax.linen as nn
  import jax

  params = nn.unbox(params)
  if "params" in params and "token_embedder" not in params:  # a variables dict
    params = params["params"]
  if t5_lib.is_scanned(params):
    params = t5_lib.unstack_layers(jax.device_get(params), cfg)
  tensors: dict[str, np.ndarray] = {}
  for ours, name, shape, transpose in _entries(cfg):
    value = np.asarray(jax.device_get(_get(params, ours, "export to Hugging Face")), np.float32)
    if value.shape != shape:
      raise ValueError(f"parameter {'/'.join(ours)} has shape {value.shape}, expected {shape}")
    tensors[name] = value.T if transpose else value
  if cfg.tie_word_embeddings and not cfg.scales_decoder_outputs:
    # An unscaled tied head: older transformers versions read "tie_word_embeddings: false" as
    # "unscaled" and then need the head written out; 5.x ties it back since it equals `shared`.
    tensors["lm_head.weight"] = tensors["shared.weight"].copy()
  hf_io.write_checkpoint(folder, config_to_hf(cfg), tensors)
