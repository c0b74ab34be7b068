"""The BERT module's own properties: axis names, key-only padding mask, pooler, pooling helpers."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from kard_jax.models import bert

T5X_AXES = {"batch", "vocab", "embed", "mlp", "heads", "kv", "joined_kv", "relpos_buckets",
            "abspos_buckets", "length", "layers", "stack", "mlp_activations"}

CFG = bert.BertConfig(vocab_size=37, emb_dim=32, num_heads=4, num_layers=2, mlp_dim=48,
                      max_positions=16, pooler=True)


def _shapes(cfg):
  ids = jnp.ones((1, 4), jnp.int32)
  return jax.eval_shape(lambda: bert.Bert(cfg).init(jax.random.PRNGKey(0), ids,
                                                    enable_dropout=False))


@pytest.fixture(scope="module")
def params():
  rng = np.random.RandomState(0)
  flat = flax.traverse_util.flatten_dict(_shapes(CFG)["params"])
  return flax.traverse_util.unflatten_dict({
      path: ((path[-1] == "scale") + 0.2 * rng.randn(*s.shape)).astype(np.float32)
      for path, s in flat.items()})


@functools.partial(jax.jit, static_argnames="cfg")
def _encode(params, ids, mask, types, cfg=CFG):
  out = bert.Bert(cfg).apply({"params": params}, ids, mask, types, enable_dropout=False)
  return out.hidden_states, out.pooled


@pytest.mark.parametrize("pooler", [True, False])
def test_every_param_has_t5x_logical_axes(pooler):
  cfg = bert.BertConfig(**{**CFG.__dict__, "pooler": pooler, "param_dtype": jnp.bfloat16})
  variables = _shapes(cfg)
  params = flax.traverse_util.flatten_dict(variables["params"])
  axes = flax.traverse_util.flatten_dict(variables["params_axes"])
  assert (("pooler", "kernel") in params) == pooler
  for path, value in params.items():
    names = axes[path[:-1] + (path[-1] + "_axes",)].names
    assert len(names) == value.ndim and set(names) <= T5X_AXES, (path, names)
    assert value.dtype == jnp.bfloat16
  assert len(axes) == len(params)


def test_masked_positions_do_not_change_real_ones(params):
  rng = np.random.RandomState(1)
  ids = rng.randint(1, CFG.vocab_size, size=(2, 10)).astype(np.int32)
  types = (np.arange(10)[None] >= 5).astype(np.int32).repeat(2, 0)
  ids[1, 6:] = 0  # six real tokens, then padding
  mask = (ids != 0).astype(np.int32)
  hidden, pooled = _encode(params, ids, mask, types)
  other = ids.copy()
  other[1, 6:] = rng.randint(1, CFG.vocab_size, size=4)  # different content under the mask
  other_hidden, other_pooled = _encode(params, other, mask, types)
  np.testing.assert_allclose(np.asarray(hidden)[1, :6], np.asarray(other_hidden)[1, :6],
                             atol=1e-5)
  np.testing.assert_allclose(np.asarray(pooled), np.asarray(other_pooled), atol=1e-5)
  unmasked, _ = _encode(params, other, np.ones_like(mask), types)
  assert np.abs(np.asarray(unmasked)[1, :6] - np.asarray(hidden)[1, :6]).max() > 1e-3
  # Without a mask, padding is `ids == pad_token_id`.
  default, _ = _encode(params, ids, None, types)
  np.testing.assert_allclose(np.asarray(default), np.asarray(hidden), atol=1e-6)


def test_pooling_helpers_match_the_sentence_transformers_recipe():
  rng = np.random.RandomState(2)
  hidden = rng.randn(3, 7, 5).astype(np.float32)
  mask = (np.arange(7)[None] < np.array([[7], [3], [0]])).astype(np.int32)
  ours = np.asarray(bert.sentence_embedding(hidden, mask))
  h, m = torch.tensor(hidden), torch.tensor(mask)[..., None].float()
  pooled = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
  reference = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
  np.testing.assert_allclose(ours, reference, atol=1e-6)
  np.testing.assert_allclose(np.asarray(bert.mean_pool(hidden, mask)), pooled.numpy(), atol=1e-6)
  assert np.all(ours[2] == 0)  # an all-padding row gives zeros, not NaN


def test_config_validation():
  with pytest.raises(ValueError, match="divisible"):
    bert.BertConfig(vocab_size=8, emb_dim=30, num_heads=4)
  with pytest.raises(ValueError, match="activation"):
    bert.BertConfig(vocab_size=8, emb_dim=32, num_heads=4, activation="mish")
