"""GPT-2 weights between Hugging Face folders (config.json + safetensors) and our parameter tree.

Hugging Face GPT-2 stores its projections as `Conv1D`, weights laid out (in, out) like our
kernels, and packs the query, key and value projections into one `c_attn` matrix [E, 3E]. Both
`GPT2LMHeadModel` names (`transformer.h.0...`) and bare `GPT2Model` names (`h.0...`) load.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from kard_jax.data.errors import InputError
from kard_jax.models import hf_io
from kard_jax.models.gpt import GPTConfig

_UNSUPPORTED = {  # config.json key -> the value we require, because our module only computes that
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
}


def config_from_hf(hf: Mapping[str, Any], path: str = "config.json", *,
                   dtype: Any = jnp.float32, param_dtype: Any = jnp.float32) -> GPTConfig:
  """GPTConfig from a GPT-2 config.json dict; InputError (naming `path`) on what we cannot run."""
  if hf.get("model_type") != "gpt2":
    raise InputError(path, f"model_type is {hf.get('model_type')!r}, expected 'gpt2'")
  for key, required in _UNSUPPORTED.items():
    if hf.get(key, required) != required:
      raise InputError(path, f"{key}={hf[key]!r} is not supported (only {required!r})")
  try:
    emb_dim = int(hf["n_embd"])
    config = GPTConfig(
        vocab_size=int(hf["vocab_size"]),
        emb_dim=emb_dim,
        num_heads=int(hf["n_head"]),
        num_layers=int(hf["n_layer"]),
        mlp_dim=int(hf.get("n_inner") or 4 * emb_dim),
        max_positions=int(hf["n_positions"]),
        dropout_rate=float(hf.get("resid_pdrop", 0.1)),
        attention_dropout_rate=float(hf.get("attn_pdrop", 0.1)),
        layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        activation=str(hf.get("activation_function", "gelu_new")),
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        dtype=dtype,
        param_dtype=param_dtype)
  except KeyError as e:
    raise InputError(path, f"missing key {e.args[0]!r}") from None
  except ValueError as e:
    raise InputError(path, str(e)) from None
  return config


def _prefix(tensors: hf_io.CheckpointTensors) -> str:
  for prefix in ("transformer.", ""):
    if f"{prefix}wte.weight" in tensors:
      return prefix
  tensors.take("transformer.wte.weight")  # raises InputError naming the tensor
  return ""


def load_hf(folder, *, dtype: Any = jnp.float32,
            param_dtype: Any = jnp.float32) -> tuple[GPTConfig, dict[str, Any]]:
  """(config, params) from a Hugging Face GPT-2 folder; params is the 'params' collection."""
  folder = os.fspath(folder)
  config = config_from_hf(hf_io.read_config(folder), os.path.join(folder, "config.json"),
                          dtype=dtype, param_dtype=param_dtype)
  t = hf_io.read_tensors(folder)
  p = _prefix(t)
  E, F, V = config.emb_dim, config.mlp_dim, config.vocab_size

  def dense(name: str, n_in: int, n_out: int) -> dict[str, np.ndarray]:
    return {"kernel": t.take(f"{name}.weight", (n_in, n_out)),
            "bias": t.take(f"{name}.bias", (n_out,))}

  def norm(name: str) -> dict[str, np.ndarray]:
    return {"scale": t.take(f"{name}.weight", (E,)), "bias": t.take(f"{name}.bias", (E,))}

  params: dict[str, Any] = {
      "token_embedder": {"embedding": t.take(f"{p}wte.weight", (V, E))},
      "position_embedder": {"embedding": t.take(f"{p}wpe.weight", (config.max_positions, E))},
      "decoder_norm": norm(f"{p}ln_f"),
  }
  for i in range(config.num_layers):
    h = f"{p}h.{i}"
    qkv = dense(f"{h}.attn.c_attn", E, 3 * E)
    kernels = np.split(qkv["kernel"], 3, axis=1)
    biases = np.split(qkv["bias"], 3)
    attention = {name: {"kernel": k, "bias": b}
                 for name, k, b in zip(("query", "key", "value"), kernels, biases)}
    attention["out"] = dense(f"{h}.attn.c_proj", E, E)
    params[f"layers_{i}"] = {
        "pre_self_attention_layer_norm": norm(f"{h}.ln_1"),
        "self_attention": attention,
        "pre_mlp_layer_norm": norm(f"{h}.ln_2"),
        "mlp": {"wi": dense(f"{h}.mlp.c_fc", E, F), "wo": dense(f"{h}.mlp.c_proj", F, E)},
    }
  if not config.tie_embeddings:
    params["logits_dense"] = {"kernel": t.take("lm_head.weight", (V, E)).T}
  params = jax.tree.map(lambda x: np.ascontiguousarray(x).astype(param_dtype), params)
  return config, params


def _numpy(params: Mapping[str, Any]) -> dict[str, Any]:
  if set(params) == {"params"}:  # accept a variables dict too
    params = params["params"]
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x), dtype=np.float32), dict(params))


def export_hf(config: GPTConfig, params: Mapping[str, Any], folder, *, bos_token_id: int = 0,
              eos_token_id: int = 1, pad_token_id: int = 0) -> None:
  """Writes a folder `transformers.GPT2LMHeadModel.from_pretrained` loads (float32 weights).

  The special ids default to our T5-style vocabulary: sequences start with the id-0 BOS that
  T5X's feature converter shifts in, and end with eos 1.
  """
  p = _numpy(params)
  tensors = {
      "transformer.wte.weight": p["token_embedder"]["embedding"],
      "transformer.wpe.weight": p["position_embedder"]["embedding"],
      "transformer.ln_f.weight": p["decoder_norm"]["scale"],
      "transformer.ln_f.bias": p["decoder_norm"]["bias"],
  }
  for i in range(config.num_layers):
    layer, h = p[f"layers_{i}"], f"transformer.h.{i}"
    att = layer["self_attention"]
    tensors[f"{h}.attn.c_attn.weight"] = np.concatenate(
        [att[n]["kernel"] for n in ("query", "key", "value")], axis=1)
    tensors[f"{h}.attn.c_attn.bias"] = np.concatenate(
        [att[n]["bias"] for n in ("query", "key", "value")])
    for ours, theirs in ((att["out"], "attn.c_proj"), (layer["mlp"]["wi"], "mlp.c_fc"),
                         (layer["mlp"]["wo"], "mlp.c_proj")):
      tensors[f"{h}.{theirs}.weight"] = ours["kernel"]
      tensors[f"{h}.{theirs}.bias"] = ours["bias"]
    for ours, theirs in (("pre_self_attention_layer_norm", "ln_1"), ("pre_mlp_layer_norm", "ln_2")):
      tensors[f"{h}.{theirs}.weight"] = layer[ours]["scale"]
      tensors[f"{h}.{theirs}.bias"] = layer[ours]["bias"]
  if not config.tie_embeddings:
    tensors["lm_head.weight"] = p["logits_dense"]["kernel"].T
  hf_config = {
      "architectures": ["GPT2LMHeadModel"],
      "model_type": "gpt2",
      "vocab_size": config.vocab_size,
      "n_positions": config.max_positions,
      "n_embd": config.emb_dim,
      "n_layer": config.num_layers,
      "n_head": config.num_heads,
      "n_inner": config.mlp_dim,
      "activation_function": config.activation,
      "resid_pdrop": config.dropout_rate,
      "embd_pdrop": config.dropout_rate,
      "attn_pdrop": config.attention_dropout_rate,
      "layer_norm_epsilon": config.layer_norm_eps,
      "initializer_range": 0.02,
      "scale_attn_weights": True,
      "scale_attn_by_inverse_layer_idx": False,
      "reorder_and_upcast_attn": False,
      "tie_word_embeddings": config.tie_embeddings,
      "bos_token_id": bos_token_id,
      "eos_token_id": eos_token_id,
      "pad_token_id": pad_token_id,
      "use_cache": True,
      "dtype": "float32",
  }
  hf_io.write_checkpoint(folder, hf_config, tensors)
