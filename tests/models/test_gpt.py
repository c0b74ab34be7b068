"""The GPT module's own properties: axis names, cached decoding, prefill, packing, dtypes.

Every forward pass goes through one jitted function of fixed shapes (batch 2, length 10), so the
file compiles a handful of programs rather than running op by op.
"""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kard_jax.models import gpt

# The logical axis names of T5X's `partitioning.standard_logical_axis_rules()`.
T5X_AXES = {"batch", "vocab", "embed", "mlp", "heads", "kv", "joined_kv", "relpos_buckets",
            "abspos_buckets", "length", "layers", "stack", "mlp_activations"}

CFG = gpt.GPTConfig(vocab_size=41, emb_dim=32, num_heads=4, num_layers=2, mlp_dim=48,
                    max_positions=16)
B, L = 2, 10


def _variable_shapes(cfg):
  ids = jnp.zeros((1, 4), jnp.int32)
  return jax.eval_shape(lambda: gpt.GPT(cfg).init(jax.random.PRNGKey(0), ids, ids,
                                                  enable_dropout=False))


def random_params(cfg, seed=0):
  """Random weights of the module's shapes; LayerNorm scales near 1 so activations stay sane."""
  rng = np.random.RandomState(seed)
  flat = flax.traverse_util.flatten_dict(_variable_shapes(cfg)["params"])
  return flax.traverse_util.unflatten_dict({
      path: ((path[-1] == "scale") + 0.2 * rng.randn(*s.shape)).astype(np.float32)
      for path, s in flat.items()})


@functools.partial(jax.jit, static_argnames=("cfg", "enable_dropout"))
def forward(params, inputs, targets, segments, positions, prefix, *, cfg=CFG,
            enable_dropout=False, rng=None):
  rngs = {"dropout": rng} if enable_dropout else {}
  return gpt.GPT(cfg).apply({"params": params}, inputs, targets, segments, positions, prefix,
                            enable_dropout=enable_dropout, rngs=rngs)


def run(params, targets, inputs=None, segments=None, positions=None, prefix=None, **kwargs):
  """Teacher-forced logits; absent features take values that leave the mask unchanged."""
  ones = np.ones_like(targets)
  inputs = _shift_right(targets) if inputs is None else inputs
  segments = ones if segments is None else segments
  positions = np.broadcast_to(np.arange(targets.shape[1]), targets.shape) if positions is None \
      else positions
  prefix = 0 * ones if prefix is None else prefix
  return np.asarray(forward(params, inputs, targets, segments, positions, prefix, **kwargs))


@functools.partial(jax.jit, static_argnames=("decode", "prefill"))
def cached_call(params, cache, inputs, targets, prefix, prefill_lengths, *, decode, prefill):
  logits, variables = gpt.GPT(CFG).apply(
      {"params": params, "cache": cache}, inputs, targets, decoder_causal_attention=prefix,
      enable_dropout=False, decode=decode, prefill=prefill, prefill_lengths=prefill_lengths,
      mutable=["cache"])
  return logits, variables["cache"]


def _shift_right(targets):
  return np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)


def _targets(rng, lengths, length=L):
  tokens = rng.randint(1, CFG.vocab_size, size=(len(lengths), length)).astype(np.int32)
  return tokens * (np.arange(length)[None] < np.asarray(lengths)[:, None])


@pytest.fixture(scope="module")
def params():
  return random_params(CFG)


@pytest.mark.parametrize("tie", [True, False])
def test_every_param_has_t5x_logical_axes(tie):
  cfg = gpt.GPTConfig(**{**CFG.__dict__, "tie_embeddings": tie, "param_dtype": jnp.bfloat16})
  variables = _variable_shapes(cfg)
  params = flax.traverse_util.flatten_dict(variables["params"])
  axes = flax.traverse_util.flatten_dict(variables["params_axes"])
  assert (("logits_dense", "kernel") in params) == (not tie)
  for path, value in params.items():
    names = axes[path[:-1] + (path[-1] + "_axes",)].names
    assert len(names) == value.ndim, path
    assert set(names) <= T5X_AXES, (path, names)
    assert value.dtype == jnp.bfloat16, path
  assert len(axes) == len(params)


def test_cached_decoding_one_token_at_a_time_matches_full_forward(params):
  targets = _targets(np.random.RandomState(0), [L, L])
  inputs = _shift_right(targets)
  full = run(params, targets)

  cache = gpt.init_cache(CFG, batch_size=B, max_length=L)
  zeros = np.zeros((B, 1), np.int32)
  outputs = []
  for t in range(L):
    logits, cache = cached_call(params, cache, inputs[:, t:t + 1], zeros, zeros, None,
                                decode=True, prefill=False)
    outputs.append(np.asarray(logits))
  np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)
  assert int(cache["cache_index"]) == L
  assert int(cache["layers_1"]["self_attention"]["cache_index"]) == L


def test_prefill_then_decode_matches_prefix_lm_forward(params):
  """T5X's prefix-LM flow: prefill the inputs (bidirectional), then decode from per-example
  positions; every logit equals the teacher-forced prefix-LM forward pass."""
  targets = _targets(np.random.RandomState(1), [L, L])
  inputs = _shift_right(targets)
  region = np.array([4, 7])  # "inputs" plus the first target position, as T5X marks it
  prefix = (np.arange(L)[None] < region[:, None]).astype(np.int32)
  full = run(params, targets, prefix=prefix)

  lengths = (region - 1).astype(np.int32)
  prefilled, cache = cached_call(params, gpt.init_cache(CFG, B, L), inputs * prefix, prefix,
                                 prefix, lengths, decode=False, prefill=True)
  np.testing.assert_array_equal(cache["cache_index"], lengths)
  for b in range(B):  # the prefix itself is computed exactly as in the full forward pass
    np.testing.assert_allclose(np.asarray(prefilled)[b, :region[b]], full[b, :region[b]],
                               atol=1e-5)

  zeros = np.zeros((B, 1), np.int32)
  checked = 0
  for s in range(L - lengths.min()):
    index = lengths + s
    token = inputs[np.arange(B), np.minimum(index, L - 1)][:, None]
    logits, cache = cached_call(params, cache, token, zeros, zeros, None, decode=True,
                                prefill=False)
    for b in range(B):
      if index[b] < L:
        np.testing.assert_allclose(np.asarray(logits)[b, 0], full[b, index[b]], atol=1e-5)
        checked += 1
  assert checked == 2 * L - lengths.sum()


def test_bidirectional_prefix_changes_only_what_it_should(params):
  targets = _targets(np.random.RandomState(2), [L, L])
  prefix = np.broadcast_to((np.arange(L) < 5).astype(np.int32), targets.shape)
  causal = run(params, targets)
  prefix_lm = run(params, targets, prefix=prefix)
  assert np.abs(causal[:, :4] - prefix_lm[:, :4]).max() > 1e-3
  # Row 0 of a causal model sees only the BOS token, whatever follows.
  other = targets.copy()
  other[:, 1:] = _targets(np.random.RandomState(3), [L, L])[:, 1:]
  np.testing.assert_allclose(causal[:, 0], run(params, other)[:, 0], atol=1e-5)


def test_packed_rows_match_separate_rows_and_padding_is_ignored(params):
  rng = np.random.RandomState(4)
  a, b = _targets(rng, [4], 4)[0], _targets(rng, [5], 5)[0]
  packed_targets = np.zeros((B, L), np.int32)
  packed_targets[0, :4], packed_targets[0, 4:9] = a, b
  packed_inputs = np.zeros_like(packed_targets)
  packed_inputs[0, 1:4], packed_inputs[0, 5:9] = a[:-1], b[:-1]
  segments = np.zeros_like(packed_targets)
  segments[0, :4], segments[0, 4:9] = 1, 2
  positions = np.zeros_like(packed_targets)
  positions[0, :9] = [0, 1, 2, 3, 0, 1, 2, 3, 4]
  packed = run(params, packed_targets, packed_inputs, segments, positions)

  separate_targets = np.zeros((B, L), np.int32)
  separate_targets[0, :4], separate_targets[1, :5] = a, b
  separate = run(params, separate_targets)
  np.testing.assert_allclose(packed[0, :4], separate[0, :4], atol=1e-5)
  np.testing.assert_allclose(packed[0, 4:9], separate[1, :5], atol=1e-5)


def test_dropout_draws_from_the_dropout_rng(params):
  cfg = gpt.GPTConfig(**{**CFG.__dict__, "dropout_rate": 0.5, "attention_dropout_rate": 0.5})
  targets = _targets(np.random.RandomState(5), [6, 9])
  # 'rbg' keys: the same semantics as threefry at a fraction of the CPU compile time.
  go = lambda seed: run(params, targets, cfg=cfg, enable_dropout=True,
                        rng=jax.random.key(seed, impl="rbg"))
  first = go(0)
  assert np.abs(first - go(1)).max() > 1e-3
  np.testing.assert_array_equal(first, go(0))


def test_bfloat16_activations_keep_float32_logits_close(params):
  cfg = gpt.GPTConfig(**{**CFG.__dict__, "dtype": jnp.bfloat16})
  targets = _targets(np.random.RandomState(6), [7, 3])
  logits = run(params, targets, cfg=cfg)
  assert logits.dtype == np.float32
  reference = run(params, targets)
  valid = targets > 0
  assert np.abs(logits - reference)[valid].max() < 0.05 * np.abs(reference).max()


def test_misuse_fails_loudly(params):
  model = gpt.GPT(CFG)
  ids = jnp.ones((1, 4), jnp.int32)
  with pytest.raises(ValueError, match="prefill needs a cache"):
    jax.eval_shape(lambda: model.apply({"params": params}, ids, ids, enable_dropout=False,
                                       prefill=True, mutable=["cache"]))
  too_long = jnp.ones((1, CFG.max_positions + 1), jnp.int32)
  with pytest.raises(ValueError, match="max_positions"):
    jax.eval_shape(lambda: model.apply({"params": params}, too_long, too_long,
                                       enable_dropout=False))
  with pytest.raises(ValueError, match="divisible"):
    gpt.GPTConfig(vocab_size=8, emb_dim=30, num_heads=4)


def test_t5x_standard_rules_shard_params_and_activations_on_a_mesh():
  """Model-parallel T5X rules on a 4x2 mesh: every named axis maps, and the result is unchanged."""
  rules = [("batch", "data"), ("vocab", "model"), ("embed", None), ("mlp", "model"),
           ("heads", "model"), ("kv", None), ("joined_kv", "model"), ("relpos_buckets", None),
           ("abspos_buckets", None), ("length", None), ("layers", None), ("stack", None),
           ("mlp_activations", None)]
  cfg = gpt.GPTConfig(**{**CFG.__dict__, "vocab_size": 48})
  params = random_params(cfg, seed=7)
  logical = flax.core.unfreeze(
      flax.linen.partitioning.get_axis_names(_variable_shapes(cfg)["params_axes"]))
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
  shardings = jax.tree.map(lambda spec: jax.sharding.NamedSharding(mesh, spec),
                           flax.linen.partitioning.logical_to_mesh(logical, rules),
                           is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  sharded = jax.device_put(params, shardings)
  P = jax.sharding.PartitionSpec
  assert sharded["layers_0"]["mlp"]["wi"]["kernel"].sharding.spec == P(None, "model")
  targets = _targets(np.random.RandomState(8), [L, 5, 7, 2]) % 48
  apply = jax.jit(lambda p, t: gpt.GPT(cfg).apply({"params": p}, _shift_right_jnp(t), t,
                                                  enable_dropout=False))
  with jax.set_mesh(mesh), flax.linen.partitioning.axis_rules(rules):
    logits = apply(sharded, targets)
  assert logits.sharding.spec == P("data", None, "model")
  np.testing.assert_allclose(np.asarray(logits), np.asarray(apply(params, targets)), atol=1e-5)


def _shift_right_jnp(targets):
  return jnp.pad(targets, ((0, 0), (1, 0)))[:, :-1]
