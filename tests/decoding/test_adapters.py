"""Cached decoding of the real students equals step-by-step argmax over the full, uncached pass."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kard_jax.decoding import adapters, decode
from kard_jax.models import gpt, t5
from tests.decoding.toy_models import random_params

MAX_NEW = 7
# Right-padded batches with different lengths (id 0 is padding).
INPUTS = np.array([[5, 9, 23, 7, 1, 0, 0, 0],
                   [44, 1, 0, 0, 0, 0, 0, 0],
                   [3, 17, 99, 12, 61, 8, 30, 1],
                   [70, 70, 2, 1, 0, 0, 0, 0]], np.int32)


@pytest.fixture(scope="module")
def tiny_t5():
  module = t5.Transformer(t5.T5Config.tiny(dropout_rate=0.0))
  params = random_params(lambda: t5.init_params(module, jax.random.key(0)), seed=0)
  return module, params


@pytest.fixture(scope="module")
def tiny_gpt():
  cfg = gpt.GPTConfig(vocab_size=128, emb_dim=64, num_heads=4, num_layers=2, mlp_dim=128,
                      max_positions=32, dropout_rate=0.0, attention_dropout_rate=0.0)
  module = gpt.GPT(cfg)
  ids = jnp.ones((1, 8), jnp.int32)
  params = random_params(
      lambda: module.init(jax.random.key(1), ids, ids, enable_dropout=False)["params"], seed=1)
  return module, params


def _t5_reference(module, params, inputs):
  """Argmax over the full teacher-forced pass, one step at a time, for every row."""
  fwd = jax.jit(lambda di, dt: module.apply({"params": params}, jnp.asarray(inputs), di, dt,
                                            enable_dropout=False))
  batch = inputs.shape[0]
  out = np.zeros((batch, MAX_NEW), np.int32)
  done = np.zeros(batch, bool)
  for t in range(MAX_NEW):
    dec_in = np.concatenate([np.zeros((batch, 1), np.int32), out[:, :MAX_NEW - 1]], 1)
    valid = (np.arange(MAX_NEW)[None] <= t).repeat(batch, 0).astype(np.int32)  # t + 1 positions
    logits = np.asarray(fwd(jnp.asarray(dec_in), jnp.asarray(valid)))
    out[:, t] = np.where(done, 0, logits[:, t].argmax(-1))
    done |= out[:, t] == decode.EOS_ID
  return out


_GREEDY = {}


def _greedy(family, module, params):
  """Greedy decodes of INPUTS, computed once per family (shared by the tests below)."""
  if family not in _GREEDY:
    config = adapters.DecodeConfig(method="greedy", max_new_tokens=MAX_NEW)
    _GREEDY[family] = jax.device_get(adapters.make_generate_fn(family, module, config)(
        params, jnp.asarray(INPUTS), jax.random.key(0)))
  return _GREEDY[family]


def test_t5_cached_greedy_equals_uncached_argmax(tiny_t5):
  module, params = tiny_t5
  got = _greedy("t5", module, params)
  np.testing.assert_array_equal(np.asarray(got.tokens[:, 0]), _t5_reference(module, params, INPUTS))


@pytest.mark.parametrize("method,n", [("greedy", 1), ("beam", 3)])
def test_t5_scanned_layers_decode_as_the_unrolled_model(tiny_t5, method, n):
  """The scanned stack (cache stacked on axis 1, batch-major) decodes the same tokens; a batch of
  one exercises the [1, layers] cache index being repeated per beam."""
  module, params = tiny_t5
  scanned = t5.Transformer(dataclasses.replace(module.config, scan_layers=True))
  stacked = t5.stack_layers(params, module.config)
  config = adapters.DecodeConfig(method=method, num_decodes=n, max_new_tokens=MAX_NEW)
  for inputs in (INPUTS, INPUTS[2:3]):
    if method == "greedy" and len(inputs) == len(INPUTS):
      want = _greedy("t5", module, params)
    else:
      want = adapters.make_generate_fn("t5", module, config)(params, jnp.asarray(inputs),
                                                              jax.random.key(0))
    got = adapters.make_generate_fn("t5", scanned, config)(stacked, jnp.asarray(inputs),
                                                           jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(want.tokens))
    np.testing.assert_allclose(np.asarray(got.scores), np.asarray(want.scores), rtol=1e-5,
                               atol=1e-5)


def _gpt_reference(module, params, inputs):
  batch, length = inputs.shape
  total = length + 1 + MAX_NEW
  lengths = (inputs > 0).sum(1)
  seq = np.zeros((batch, total), np.int32)
  seq[:, 1:length + 1] = inputs
  prefix = (np.arange(total)[None] <= lengths[:, None]).astype(np.int32)
  fwd = jax.jit(lambda s, v: module.apply({"params": params}, s, v, decoder_causal_attention=
                                          jnp.asarray(prefix), enable_dropout=False))
  out = np.zeros((batch, MAX_NEW), np.int32)
  done = np.zeros(batch, bool)
  rows = np.arange(batch)
  for t in range(MAX_NEW):
    valid = (np.arange(total)[None] <= (lengths + t)[:, None]).astype(np.int32)
    logits = np.asarray(fwd(jnp.asarray(seq), jnp.asarray(valid)))
    nxt = logits[rows, lengths + t].argmax(-1)
    out[:, t] = np.where(done, 0, nxt)
    done |= out[:, t] == decode.EOS_ID
    seq[rows, lengths + t + 1] = nxt
  return out


def test_gpt_cached_greedy_equals_uncached_argmax(tiny_gpt):
  module, params = tiny_gpt
  got = _greedy("gpt", module, params)
  np.testing.assert_array_equal(np.asarray(got.tokens[:, 0]),
                                _gpt_reference(module, params, INPUTS))


@pytest.mark.parametrize("family", ["t5", "gpt"])
def test_every_sample_reads_its_own_inputs_cache(family, tiny_t5, tiny_gpt):
  # top_k=1 makes sampling deterministic: each of the samples of input b must equal b's greedy
  # decode, which holds only if caches (and T5's cross-attention keys/values) were expanded
  # row by row.
  module, params = tiny_t5 if family == "t5" else tiny_gpt
  greedy = _greedy(family, module, params)
  sampled = adapters.make_generate_fn(family, module, adapters.DecodeConfig(
      method="sample", num_decodes=3, top_k=1, max_new_tokens=MAX_NEW))(
          params, jnp.asarray(INPUTS), jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(sampled.tokens),
                                np.repeat(np.asarray(greedy.tokens), 3, axis=1))
  np.testing.assert_allclose(np.asarray(sampled.scores),
                             np.repeat(np.asarray(greedy.scores), 3, axis=1), rtol=1e-5)
