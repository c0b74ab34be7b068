"""Orbax save/restore of parameter trees."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from kard_jax.data.errors import InputError
from kard_jax.models import params_io, t5


def _tree():
  rng = np.random.RandomState(0)
  return {"encoder": {"kernel": rng.randn(8, 4).astype(np.float32),
                      "scale": rng.randn(4).astype(jnp.bfloat16)},
          "embedding": rng.randn(16, 8).astype(np.float32)}


def test_round_trip_keeps_values_dtypes_and_description(tmp_path):
  tree = _tree()
  cfg = t5.T5Config.tiny(dtype="bfloat16")
  params_io.save(tmp_path / "p", tree, family="t5", config=cfg)
  back = params_io.restore(tmp_path / "p")
  assert jax.tree.structure(back) == jax.tree.structure(tree)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), b)
  description = params_io.read_model_config(tmp_path / "p")
  assert description["family"] == "t5"
  assert t5.T5Config(**description["config"]) == cfg
  assert params_io.read_model_config(tmp_path) is None


def test_boxed_params_save_as_plain_arrays_and_restore_sharded(tmp_path):
  tree = _tree()
  boxed = {"encoder": {"kernel": nn.LogicallyPartitioned(tree["encoder"]["kernel"], ("embed", "mlp")),
                       "scale": nn.LogicallyPartitioned(tree["encoder"]["scale"], ("mlp",))},
           "embedding": nn.LogicallyPartitioned(tree["embedding"], ("vocab", "embed"))}
  params_io.save(tmp_path / "p", boxed)
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
  rules = [("vocab", "model"), ("mlp", "model"), ("embed", None)]
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
  back = params_io.restore(tmp_path / "p", boxed, shardings=shardings)
  assert back["embedding"].sharding == NamedSharding(mesh, P("model", None))
  assert back["encoder"]["kernel"].sharding == NamedSharding(mesh, P(None, "model"))
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(nn.unbox(boxed))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_restore_casts_to_the_target_dtype(tmp_path):
  tree = _tree()
  params_io.save(tmp_path / "p", tree)
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16), tree)
  back = params_io.restore(tmp_path / "p", target)
  assert {x.dtype for x in jax.tree.leaves(back)} == {jnp.dtype(jnp.bfloat16)}
  np.testing.assert_allclose(np.asarray(back["embedding"], np.float32), tree["embedding"],
                             rtol=1e-2)


def test_mismatches_are_input_errors_naming_the_parameter(tmp_path):
  tree = _tree()
  params_io.save(tmp_path / "p", tree)
  wrong = dict(tree, embedding=np.zeros((16, 9), np.float32))
  with pytest.raises(InputError, match=r"\['embedding'\].*\(16, 8\).*\(16, 9\)"):
    params_io.restore(tmp_path / "p", wrong)
  with pytest.raises(InputError, match=r"no parameter \['extra'\]"):
    params_io.restore(tmp_path / "p", dict(tree, extra=np.zeros(3, np.float32)))
  with pytest.raises(InputError, match="no parameter checkpoint"):
    params_io.restore(tmp_path / "missing")
