"""Small models that compile in a second, for tests of the step, the loop and the checkpoints.

`TinyEncDec` / `TinyDecoder` have the T5X network interfaces (so they run inside the real
`EncoderDecoderModel` / `DecoderOnlyModel`); `Regression` is a non-token `BaseModel` with its own
batch format, the shape of what the reranker plugs into the trainer.
"""

from __future__ import annotations

from typing import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kard_jax.training import input_pipeline, models

VOCAB = 16


def _param(module, name, shape, axes):
  return module.param(name, nn.with_logical_partitioning(nn.initializers.normal(0.5), axes), shape)


class TinyEncDec(nn.Module):
  """logits = embed(decoder inputs) + mean(embed(encoder inputs)) @ W."""

  @nn.compact
  def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
               encoder_segment_ids=None, decoder_segment_ids=None, encoder_positions=None,
               decoder_positions=None, *, enable_dropout=True, decode=False):
    emb = _param(self, "embedding", (VOCAB, 8), ("vocab", "embed"))
    out = _param(self, "out", (8, VOCAB), ("embed", "vocab"))
    context = jnp.mean(emb[encoder_input_tokens], axis=1, keepdims=True)
    h = jnp.tanh(emb[decoder_input_tokens] + context)
    h = nn.Dropout(0.5)(h, deterministic=not enable_dropout)
    return h @ out


class TinyDecoder(nn.Module):
  """A causal bag-of-previous-tokens language model with T5X's decoder-only interface."""
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, decoder_input_tokens, decoder_target_tokens, decoder_segment_ids=None,
               decoder_positions=None, decoder_causal_attention=None, *, enable_dropout=True,
               decode=False):
    emb = _param(self, "embedding", (VOCAB, 8), ("vocab", "embed"))
    mlp = _param(self, "mlp", (8, 32), ("embed", "mlp"))
    out = _param(self, "out", (32, VOCAB), ("mlp", "vocab"))
    x = jnp.cumsum(emb[decoder_input_tokens], axis=1)
    h = jax.nn.relu(x @ mlp)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=not enable_dropout)
    return h @ out


class Regression(models.BaseModel):
  """Least squares y ~ x @ w: a model with its own batch format ({"x", "y"})."""

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    dim = input_shapes["x"][-1]
    return {"params": {"w": nn.LogicallyPartitioned(jax.random.normal(rng, (dim, 1)) * 0.1,
                                                    ("mlp", None))}}

  def default_input_shapes(self):
    return {"x": (1, 4), "y": (1,)}

  def loss_fn(self, params, batch, dropout_rng, step=None):
    err = (batch["x"] @ params["w"])[:, 0] - batch["y"]
    n = jnp.asarray(err.shape[0], jnp.float32)
    loss = jnp.sum(err ** 2) / n
    return loss, {"loss": loss, models.DENOMINATOR: n, "num_examples": n}

  def eval_fn(self, params, batch):
    err = (batch["x"] @ params["w"])[:, 0] - batch["y"]
    real = (batch["y"] != 0).astype(jnp.float32)
    return {"loss": (jnp.sum(real * err ** 2), jnp.sum(real))}


class ListInput(input_pipeline.InputPipeline):
  """Fixed host batches; `batches(start)` resumes at any index, as the trainer requires."""

  def __init__(self, batches: list[dict[str, np.ndarray]], repeat: bool = True):
    self._batches = batches
    self._repeat = repeat

  @property
  def element_spec(self):
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in self._batches[0].items()}

  def batches(self, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
    i = start
    while self._repeat or i < len(self._batches):
      yield self._batches[i % len(self._batches)]
      i += 1


def regression_batches(n: int, batch_size: int = 8, seed: int = 0, poison_at: int | None = None):
  """Batches of a noiseless linear problem; batch `poison_at` contains an inf."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(4,)).astype(np.float32)
  out = []
  for i in range(n):
    x = rng.normal(size=(batch_size, 4)).astype(np.float32)
    y = (x @ w).astype(np.float32)
    if i == poison_at:
      x[0, 0] = np.inf
    out.append({"x": x, "y": y})
  return out


def token_batches(n: int, batch_size: int = 8, length: int = 6, seed: int = 0, encdec=False):
  """Random token batches with ragged padding and per-example loss weights."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    targets = rng.integers(2, VOCAB, size=(batch_size, length)).astype(np.int32)
    lengths = rng.integers(1, length + 1, size=batch_size)
    targets = np.where(np.arange(length)[None] < lengths[:, None], targets, 0).astype(np.int32)
    inputs = np.concatenate([np.zeros((batch_size, 1), np.int32), targets[:, :-1]], axis=1)
    weights = (targets > 0) * rng.choice([0.5, 1.0, 2.0], size=(batch_size, 1))
    batch = {"decoder_target_tokens": targets, "decoder_input_tokens": inputs,
             "decoder_loss_weights": weights.astype(np.float32)}
    if encdec:
      batch["encoder_input_tokens"] = rng.integers(1, VOCAB, size=(batch_size, 5)).astype(np.int32)
    out.append(batch)
  return out
