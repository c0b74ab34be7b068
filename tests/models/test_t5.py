"""T5 against `transformers`, and the properties training and decoding rely on.

Compiling dominates these tests' time, so they share one batch shape and one compiled forward per
configuration (`_forward`).
"""

import dataclasses
import functools

import flax.linen as nn
from flax import traverse_util
from flax.linen import partitioning as nn_partitioning
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from kard_jax.models import t5, t5_weights
from tests.models import t5_reference as ref

T5X_AXES = {"batch", "length", "embed", "mlp", "heads", "kv", "joined_kv", "vocab",
            "relpos_buckets"}
T5X_RULES = [("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("heads", "model"),
             ("joined_kv", "model"), ("embed", None), ("kv", None), ("length", None),
             ("relpos_buckets", None)]


@functools.cache
def _forward(cfg: t5.T5Config, packed: bool = False):
  model = t5.Transformer(cfg)
  if packed:
    return jax.jit(lambda p, e, di, t, es, ds: model.apply(
        {"params": p}, e, di, t, encoder_segment_ids=es, decoder_segment_ids=ds,
        enable_dropout=False))
  return jax.jit(lambda p, e, di, t: model.apply({"params": p}, e, di, t, enable_dropout=False))


LAYOUTS = ["unrolled", "scanned"]  # layers_0 .. layers_{n-1}, or one nn.scan over stacked params


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """variant (and variant + "/scanned") -> (HF model, our config, our params), the params read
  through our converter.

  Our configs keep dropout at 0.1, so every comparison below also shows enable_dropout=False works.
  """
  out = {}
  for variant in ("v1_1_untied", "original_tied"):
    hf = ref.hf_model(variant)
    folder = ref.save(hf, tmp_path_factory.mktemp(variant))
    cfg, params = t5_weights.load_hf(folder, dropout_rate=0.1)
    out[variant] = (hf, cfg, params)
    cfg, params = t5_weights.load_hf(folder, dropout_rate=0.1, scan_layers=True)
    out[variant + "/scanned"] = (hf, cfg, params)
  return out


def _key(variant: str, layout: str) -> str:
  return variant if layout == "unrolled" else f"{variant}/{layout}"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", ["v1_1_untied", "original_tied"])
def test_logits_match_transformers_on_padded_batch(converted, variant, layout):
  hf, cfg, params = converted[_key(variant, layout)]
  assert cfg.scan_layers == (layout == "scanned")
  assert ("layers" in params["decoder"]) == (layout == "scanned")
  assert cfg.tie_word_embeddings == (variant == "original_tied")
  assert cfg.scales_decoder_outputs == (variant == "original_tied")
  assert cfg.feed_forward == ("relu" if variant == "original_tied" else "gated-gelu")
  enc, dec_in, tgt = ref.padded_batch()
  ours = np.asarray(_forward(cfg)(params, enc, dec_in, tgt))
  expected = ref.hf_logits(hf, enc, dec_in, tgt)
  valid = tgt > 0
  assert ours.dtype == np.float32
  np.testing.assert_allclose(ours[valid], expected[valid], atol=1e-4, rtol=1e-4)


def test_packed_row_equals_separate_rows(converted):
  _, cfg, params = converted["v1_1_untied"]
  enc, dec_in, tgt = ref.padded_batch()
  separate = np.asarray(_forward(cfg)(params, enc, dec_in, tgt))
  # Row 0 packs rows 1 (7 inputs, 5 targets) and 2 (3, 2); each decoder segment starts with 0.
  p_enc, p_in, p_tgt = enc.copy(), dec_in.copy(), tgt.copy()
  p_enc[0] = np.concatenate([enc[1, :7], enc[2, :3], [0, 0]])
  p_in[0] = np.concatenate([dec_in[1, :5], dec_in[2, :2], [0, 0]])
  p_tgt[0] = np.concatenate([tgt[1, :5], tgt[2, :2], [0, 0]])
  e_seg, d_seg = (enc > 0).astype(np.int32), (tgt > 0).astype(np.int32)
  e_seg[0] = [1] * 7 + [2] * 3 + [0, 0]
  d_seg[0] = [1] * 5 + [2] * 2 + [0, 0]
  packed = np.asarray(_forward(cfg, packed=True)(params, p_enc, p_in, p_tgt, e_seg, d_seg))
  np.testing.assert_allclose(packed[0, :5], separate[1, :5], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(packed[0, 5:7], separate[2, :2], atol=1e-5, rtol=1e-5)
  valid = tgt[1:] > 0  # unpacked rows with segment ids = their padding mask: unchanged
  np.testing.assert_allclose(packed[1:][valid], separate[1:][valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cached_decoding_equals_full_forward(converted, layout):
  _, cfg, params = converted[_key("v1_1_untied", layout)]
  scanned = layout == "scanned"
  model = t5.Transformer(cfg)
  enc, dec_in, tgt = ref.padded_batch()
  batch, steps = tgt.shape
  full = np.asarray(_forward(cfg)(params, enc, dec_in, tgt))
  encoded = jax.jit(lambda p, e: model.apply(
      {"params": p}, e, enable_dropout=False, method=t5.Transformer.encode))(params, enc)

  @jax.jit
  def step(cache, token, encoded):
    logits, state = model.apply({"params": params, "cache": cache}, encoded, enc, token, token,
                                enable_dropout=False, decode=True, mutable=["cache"],
                                method=t5.Transformer.decode)
    return logits, state["cache"]

  cache = t5.init_decode_cache(model, batch, enc.shape[1], steps)
  lengths = {"self_attention": steps, "encoder_decoder_attention": enc.shape[1]}
  layers = (cfg.num_decoder_layers,) if scanned else ()  # scanned: stacked on axis 1
  for path, leaf in jax.tree_util.tree_flatten_with_path(cache)[0]:
    if path[-1].key == "cache_index":
      assert leaf.shape == ((1,) + layers if scanned else ()) and not leaf.any()
    else:  # batch-major (beams are tiled and gathered along axis 0), then heads-major
      length = lengths[path[-2].key]
      assert leaf.shape == (batch,) + layers + (cfg.num_heads, length, cfg.head_dim)
      assert not leaf.any()
  outputs = []
  for i in range(steps):
    # The encoder output is projected at the first step only: later steps read the cache.
    logits, cache = step(cache, dec_in[:, i:i + 1], encoded if i == 0 else 0 * encoded)
    assert logits.shape == (batch, 1, cfg.vocab_size)
    outputs.append(np.asarray(logits))
  stepped = np.concatenate(outputs, axis=1)
  valid = tgt > 0
  np.testing.assert_allclose(stepped[valid], full[valid], atol=1e-5, rtol=1e-5)
  indices = np.concatenate([np.ravel(v) for k, v in jax.tree_util.tree_flatten_with_path(cache)[0]
                            if k[-1].key == "cache_index"])
  assert len(indices) == 2 * cfg.num_decoder_layers and (indices == steps).all()


def test_every_param_has_t5x_logical_axes_and_shards_under_t5x_rules(converted):
  _, cfg, params = converted["v1_1_untied"]
  model = t5.Transformer(cfg)
  enc, dec_in, tgt = ref.padded_batch()
  variables = jax.eval_shape(lambda: t5.init_variables(model, jax.random.PRNGKey(0)))
  assert set(variables) == {"params", "params_axes"}
  specs = t5.logical_axes(model)
  # What T5X's train state checks: one axes entry per parameter, same paths.
  flat_params = traverse_util.flatten_dict(params, sep="/")
  flat_specs = traverse_util.flatten_dict(
      nn_partitioning.get_axis_names(variables["params_axes"]), sep="/")
  assert set(flat_specs) == set(flat_params)
  for name, value in flat_params.items():
    spec = flat_specs[name]
    assert len(spec) == value.ndim and set(spec) <= T5X_AXES, name
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
  shardings = nn.logical_to_mesh_sharding(specs, mesh, T5X_RULES)
  assert shardings["token_embedder"]["embedding"].spec == P("model", None)
  assert shardings["decoder"]["layers_0"]["mlp"]["wo"]["kernel"].spec == P("model", None)
  sharded = jax.device_put(params, shardings)
  expected = np.asarray(_forward(cfg)(params, enc, dec_in, tgt))
  with jax.set_mesh(mesh), nn.logical_axis_rules(T5X_RULES):
    data = NamedSharding(mesh, P("data"))
    got = jax.jit(lambda p, e, di, t: model.apply({"params": p}, e, di, t, enable_dropout=False))(
        sharded, *(jax.device_put(x, data) for x in (enc, dec_in, tgt)))
  assert got.sharding.spec[0] == "data"
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5, rtol=1e-5)


def test_bf16_activations_keep_fp32_params_and_logits(converted):
  _, cfg, params = converted["v1_1_untied"]
  enc, dec_in, tgt = ref.padded_batch()
  full = np.asarray(_forward(cfg)(params, enc, dec_in, tgt))
  bf16 = dataclasses.replace(cfg, dtype="bfloat16")
  abstract = jax.eval_shape(lambda: t5.init_params(t5.Transformer(bf16), jax.random.PRNGKey(0)))
  assert {x.dtype for x in jax.tree.leaves(abstract)} == {jnp.dtype("float32")}
  low = np.asarray(_forward(bf16)(params, enc, dec_in, tgt))
  assert low.dtype == np.float32
  valid = tgt > 0
  err = np.abs(low[valid] - full[valid]).max() / np.abs(full[valid]).max()
  assert 0 < err < 0.05
  stored = t5.Transformer(t5.T5Config.tiny(param_dtype="bfloat16", dtype="bfloat16"))
  leaves = jax.tree.leaves(jax.eval_shape(lambda: t5.init_params(stored, jax.random.PRNGKey(0))))
  assert {x.dtype for x in leaves} == {jnp.dtype("bfloat16")}


def test_dropout_when_enabled_varies_with_the_rng(converted):
  _, cfg, params = converted["v1_1_untied"]
  assert cfg.dropout_rate > 0
  model = t5.Transformer(cfg)
  enc, dec_in, tgt = ref.padded_batch()
  run = jax.jit(lambda p, r, e, di, t: model.apply(
      {"params": p}, e, di, t, enable_dropout=True, rngs={"dropout": r}))
  key = lambda seed: jax.random.key(seed, impl="rbg")  # compiles far faster than threefry on CPU
  a = np.asarray(run(params, key(1), enc, dec_in, tgt))
  b = np.asarray(run(params, key(2), enc, dec_in, tgt))
  c = np.asarray(run(params, key(1), enc, dec_in, tgt))
  off = np.asarray(_forward(cfg)(params, enc, dec_in, tgt))
  assert not np.allclose(a, b) and np.array_equal(a, c) and not np.allclose(a, off)


@pytest.mark.parametrize("remat", ["dots_saveable", "full"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_remat_wraps_every_layer_and_keeps_gradients(layout, remat):
  cfg = t5.T5Config.tiny(num_encoder_layers=2, num_decoder_layers=3, remat=remat,
                         scan_layers=layout == "scanned")
  model = t5.Transformer(cfg)
  enc, dec_in, tgt = ref.padded_batch()
  params = jax.eval_shape(lambda: t5.init_params(model, jax.random.PRNGKey(0)))
  loss = lambda p, r: model.apply({"params": p}, enc, dec_in, tgt, rngs={"dropout": r}).mean()
  jaxpr = str(jax.make_jaxpr(loss)(params, jax.random.PRNGKey(0)))
  # Unrolled: one remat per layer; scanned: one scan per stack, its body one rematted layer.
  if cfg.scan_layers:
    assert jaxpr.count("remat2[") == 2 and jaxpr.count("scan[") == 2
    assert params["decoder"]["layers"]["mlp"]["wo"]["kernel"].shape == (3, cfg.d_ff, cfg.d_model)
  else:
    assert jaxpr.count("remat2[") == cfg.num_encoder_layers + cfg.num_decoder_layers
  assert ("policy=DotsSaveable" in jaxpr) == (remat == "dots_saveable")
  grads = jax.eval_shape(jax.grad(loss), params, jax.random.PRNGKey(0))
  assert jax.tree.structure(grads) == jax.tree.structure(params)


def test_scanned_and_unrolled_layouts_convert_both_ways(converted):
  _, cfg, params = converted["v1_1_untied"]
  _, scfg, sparams = converted["v1_1_untied/scanned"]
  assert t5.is_scanned(sparams) and not t5.is_scanned(params)
  model_tree = jax.eval_shape(lambda: t5.init_params(t5.Transformer(scfg), jax.random.PRNGKey(0)))
  assert jax.tree.structure(sparams) == jax.tree.structure(model_tree)
  jax.tree.map(np.testing.assert_array_equal, t5.stack_layers(params, cfg), sparams)
  jax.tree.map(np.testing.assert_array_equal, t5.unstack_layers(sparams, cfg), params)
  with pytest.raises(ValueError, match="layers_1 beyond its 1 layers"):
    t5.stack_layers(params, dataclasses.replace(cfg, num_encoder_layers=1))


@pytest.mark.parametrize("size", ["small", "xl"])
def test_flan_t5_presets_have_the_reference_parameter_count(size):
  # XL with two layers per stack: its widths are what matter; tracing 48 layers only costs time.
  layers = {} if size == "small" else dict(num_encoder_layers=2, num_decoder_layers=2)
  cfg = t5.T5Config.flan_t5(size, **layers)
  abstract = jax.eval_shape(lambda: t5.init_params(t5.Transformer(cfg), jax.random.PRNGKey(0), 2, 2))
  ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract))
  hf_config = transformers.T5Config(**t5_weights.config_to_hf(cfg))
  with torch.device("meta"):
    hf = transformers.T5ForConditionalGeneration(hf_config)
  unique = sum(p.numel() for p in hf.parameters())  # transformers 5.x ties the head to `shared`
  assert ours == unique + cfg.vocab_size * cfg.d_model
