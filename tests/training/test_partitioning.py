"""Mesh shapes, logical-axis rules and the shardings derived for parameters and optimizer state."""

import jax
import pytest
from jax.sharding import PartitionSpec as P

from kard_jax.training import models, optimizers, partitioning, train_state
from tests.training import toy_models


def test_resolve_mesh_shape():
  assert partitioning.resolve_mesh_shape((-1, 2), 8) == (4, 2)
  assert partitioning.resolve_mesh_shape((2, -1), 8) == (2, 4)
  assert partitioning.resolve_mesh_shape((1, 1), 8) == (1, 1)  # a sub-mesh is allowed
  for bad in [(-1, -1), (-1, 3), (4, 4), (0, 1), (1, 2, 3)]:
    with pytest.raises(ValueError):
      partitioning.resolve_mesh_shape(bad, 8)


def test_create_mesh_axes_and_host_shard():
  mesh = partitioning.create_mesh((-1, 2))
  assert mesh.axis_names == ("data", "model")
  assert dict(mesh.shape) == {"data": 4, "model": 2}
  assert mesh.size == len(jax.devices()) == 8
  info = partitioning.host_shard_info()
  assert (info.index, info.num_shards) == (0, 1)


def test_standard_rules_follow_t5x():
  rules = dict(partitioning.standard_logical_axis_rules())
  assert rules["batch"] == "data"
  for name in ("vocab", "mlp", "heads", "joined_kv"):
    assert rules[name] == "model"
  for name in ("embed", "kv", "length", "relpos_buckets"):
    assert rules[name] is None


def _setup(tx):
  mesh = partitioning.create_mesh((4, 2))
  model = models.DecoderOnlyModel(toy_models.TinyDecoder())
  return train_state.setup_state(model, tx, mesh, partitioning.standard_logical_axis_rules(),
                                 {"decoder_input_tokens": (8, 6), "decoder_target_tokens": (8, 6)})


def _opt_leaves(setup):
  shardings = jax.tree_util.tree_flatten_with_path(setup.shardings.opt_state)[0]
  abstract = dict(jax.tree_util.tree_flatten_with_path(setup.abstract_state.opt_state)[0])
  return [(jax.tree_util.keystr(path), abstract[path].shape, s.spec) for path, s in shardings]


def test_adamw_moments_follow_their_parameters():
  setup = _setup(optimizers.adamw(1e-3, weight_decay=0.1))
  params = {k: s.spec for k, s in setup.shardings.params.items()}
  # `out` is (mlp, vocab): both map to `model`, and the earlier rule (vocab) claims it.
  assert params == {"embedding": P("model", None), "mlp": P(None, "model"),
                    "out": P(None, "model")}
  moments = [(name, spec) for name, shape, spec in _opt_leaves(setup) if len(shape) == 2]
  assert len(moments) == 6  # mu and nu of three matrices
  for name, spec in moments:
    param = next(k for k in params if f"['{k}']" in name)
    assert spec == params[param], name


def test_adafactor_factored_statistics_are_replicated():
  setup = _setup(optimizers.adafactor(1e-3, min_dim_size_to_factor=8))
  leaves = _opt_leaves(setup)
  assert any("v_row" in name and shape == (16,) for name, shape, _ in leaves)  # out: (32, 16)
  for name, shape, spec in leaves:
    if len(shape) < 2:
      assert all(axis is None for axis in spec), name


def test_gpt_params_axes_collection_is_sharded_like_boxed_params():
  """GPT declares axes in a `params_axes` collection (T5X's layers); T5 boxes its parameters."""
  from kard_jax.models import gpt, t5
  mesh = partitioning.create_mesh((4, 2))
  rules = partitioning.standard_logical_axis_rules()
  gpt_model = models.DecoderOnlyModel(gpt.GPT(gpt.GPTConfig(
      vocab_size=64, emb_dim=32, num_heads=4, num_layers=1, mlp_dim=64, max_positions=32)))
  _, shardings, _ = train_state.param_shardings(gpt_model, mesh, rules)
  assert shardings["token_embedder"]["embedding"].spec == P("model", None)
  assert shardings["layers_0"]["mlp"]["wi"]["kernel"].spec == P(None, "model")
  t5_model = models.EncoderDecoderModel(t5.Transformer(t5.T5Config.tiny()))
  _, shardings, _ = train_state.param_shardings(t5_model, mesh, rules)
  assert shardings["decoder"]["logits_dense"]["kernel"].spec == P(None, "model")
  assert shardings["encoder"]["relpos_bias"]["rel_embedding"].spec == P("model", None)
