"""BERT-family weights (BERT, MiniLM, LinkBERT) from Hugging Face folders into our parameter tree.

All three use `BertModel`'s tensor names. Task checkpoints (`BertForMaskedLM`, ...) prefix them
with `bert.` and carry heads we ignore; old TensorFlow conversions name LayerNorm parameters
`gamma`/`beta`. Linear weights are PyTorch's (out, in) and are transposed to our (in, out)
kernels. The pooler is loaded when the checkpoint has one.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from kard_jax.data.errors import InputError
from kard_jax.models import hf_io
from kard_jax.models.bert import BertConfig


def config_from_hf(hf: Mapping[str, Any], path: str = "config.json", *, pooler: bool = False,
                   dtype: Any = jnp.float32, param_dtype: Any = jnp.float32) -> BertConfig:
  """BertConfig from a BERT config.json dict; InputError (naming `path`) on what we cannot run."""
  if hf.get("model_type", "bert") != "bert":
    raise InputError(path, f"model_type is {hf.get('model_type')!r}, expected 'bert'")
  position_type = hf.get("position_embedding_type", "absolute")
  if position_type != "absolute":
    raise InputError(path, f"position_embedding_type={position_type!r} is not supported "
                     "(only 'absolute')")
  if hf.get("is_decoder") or hf.get("add_cross_attention"):
    raise InputError(path, "decoder BERT configurations are not supported")
  try:
    return BertConfig(
        vocab_size=int(hf["vocab_size"]),
        emb_dim=int(hf["hidden_size"]),
        num_heads=int(hf["num_attention_heads"]),
        num_layers=int(hf["num_hidden_layers"]),
        mlp_dim=int(hf["intermediate_size"]),
        max_positions=int(hf["max_position_embeddings"]),
        type_vocab_size=int(hf.get("type_vocab_size", 2)),
        dropout_rate=float(hf.get("hidden_dropout_prob", 0.1)),
        attention_dropout_rate=float(hf.get("attention_probs_dropout_prob", 0.1)),
        layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        activation=str(hf.get("hidden_act", "gelu")),
        pad_token_id=int(hf.get("pad_token_id") or 0),
        pooler=pooler,
        dtype=dtype,
        param_dtype=param_dtype)
  except KeyError as e:
    raise InputError(path, f"missing key {e.args[0]!r}") from None
  except ValueError as e:
    raise InputError(path, str(e)) from None


def _prefix(tensors: hf_io.CheckpointTensors) -> str:
  for prefix in ("", "bert."):
    if f"{prefix}embeddings.word_embeddings.weight" in tensors:
      return prefix
  tensors.take("embeddings.word_embeddings.weight")  # raises InputError naming the tensor
  return ""


def load_hf(folder, *, dtype: Any = jnp.float32,
            param_dtype: Any = jnp.float32) -> tuple[BertConfig, dict[str, Any]]:
  """(config, params) from a Hugging Face BERT-family folder; params is the 'params' collection."""
  folder = os.fspath(folder)
  hf = hf_io.read_config(folder)
  t = hf_io.read_tensors(folder)
  p = _prefix(t)
  has_pooler = f"{p}pooler.dense.weight" in t
  config = config_from_hf(hf, os.path.join(folder, "config.json"), pooler=has_pooler,
                          dtype=dtype, param_dtype=param_dtype)
  E, F = config.emb_dim, config.mlp_dim

  def dense(name: str, n_in: int, n_out: int) -> dict[str, np.ndarray]:
    return {"kernel": t.take(f"{name}.weight", (n_out, n_in)).T,
            "bias": t.take(f"{name}.bias", (n_out,))}

  def norm(name: str) -> dict[str, np.ndarray]:
    if f"{name}.gamma" in t and f"{name}.weight" not in t:
      return {"scale": t.take(f"{name}.gamma", (E,)), "bias": t.take(f"{name}.beta", (E,))}
    return {"scale": t.take(f"{name}.weight", (E,)), "bias": t.take(f"{name}.bias", (E,))}

  emb = f"{p}embeddings"
  params: dict[str, Any] = {
      "token_embedder": {"embedding": t.take(f"{emb}.word_embeddings.weight",
                                             (config.vocab_size, E))},
      "position_embedder": {"embedding": t.take(f"{emb}.position_embeddings.weight",
                                                (config.max_positions, E))},
      "token_type_embedder": {"embedding": t.take(f"{emb}.token_type_embeddings.weight",
                                                  (config.type_vocab_size, E))},
      "embeddings_layer_norm": norm(f"{emb}.LayerNorm"),
  }
  for i in range(config.num_layers):
    layer = f"{p}encoder.layer.{i}"
    attention = {name: dense(f"{layer}.attention.self.{name}", E, E)
                 for name in ("query", "key", "value")}
    attention["out"] = dense(f"{layer}.attention.output.dense", E, E)
    params[f"layers_{i}"] = {
        "attention": attention,
        "post_attention_layer_norm": norm(f"{layer}.attention.output.LayerNorm"),
        "mlp": {"wi": dense(f"{layer}.intermediate.dense", E, F),
                "wo": dense(f"{layer}.output.dense", F, E)},
        "post_mlp_layer_norm": norm(f"{layer}.output.LayerNorm"),
    }
  if has_pooler:
    params["pooler"] = dense(f"{p}pooler.dense", E, E)
  params = jax.tree.map(lambda x: np.ascontiguousarray(x).astype(param_dtype), params)
  return config, params
