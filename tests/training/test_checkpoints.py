"""Orbax round trips: sharded state across meshes, keep-N, parameters alone, model description."""

import json
import os

import jax
import numpy as np

from kard_jax.training import checkpoints, models, optimizers, partitioning, train_state
from tests.training import toy_models

SHAPES = {"decoder_input_tokens": (8, 6), "decoder_target_tokens": (8, 6)}


def _setup(mesh_shape):
  model = models.DecoderOnlyModel(toy_models.TinyDecoder())
  tx = optimizers.adamw(1e-3)
  mesh = partitioning.create_mesh(mesh_shape)
  setup = train_state.setup_state(model, tx, mesh, partitioning.standard_logical_axis_rules(),
                                  SHAPES)
  return model, tx, mesh, setup


def _equal(a, b):
  return jax.tree.all(jax.tree.map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), a, b))


def test_state_round_trip_onto_another_mesh(tmp_path):
  model, tx, _, setup = _setup((4, 2))
  state = train_state.create_state(model, tx, setup, seed=3, input_shapes=SHAPES)
  ckpt = checkpoints.Checkpointer(str(tmp_path), period=10, keep=2, use_async=True)
  for step in (10, 20, 30):
    state = state.replace(step=jax.device_put(np.int32(step), setup.shardings.step))
    assert ckpt.save(state, batches_consumed=step + 1)
  ckpt.wait()
  assert ckpt.all_steps() == [20, 30]  # keep=2
  assert sorted(n for n in os.listdir(tmp_path) if n.startswith("checkpoint_")) == [
      "checkpoint_20", "checkpoint_30"]

  _, _, _, other = _setup((2, 4))
  restored, meta = ckpt.restore(other)
  ckpt.close()
  assert meta["step"] == 30 and meta["batches_consumed"] == 31
  assert int(restored.step) == 30
  assert _equal(restored.params, state.params) and _equal(restored.opt_state, state.opt_state)
  assert _equal(restored.rng, state.rng)
  kernel = restored.params["mlp"]
  assert kernel.sharding.spec == other.shardings.params["mlp"].spec
  assert kernel.sharding.shard_shape(kernel.shape) == (8, 8)  # 32 columns over 4 model devices

  checkpoints.write_model_config(str(tmp_path), {"family": "toy", "config": {"d": 1}})
  assert json.loads((tmp_path / "model_config.json").read_text())["family"] == "toy"
  params, step = checkpoints.latest_params(str(tmp_path))
  assert step == 30 and _equal(params, state.params)
  assert params["mlp"].sharding.device_set == {jax.devices()[0]}


def test_params_alone_round_trip_with_shardings(tmp_path):
  model, tx, mesh, setup = _setup((8, 1))
  state = train_state.create_state(model, tx, setup, seed=0, input_shapes=SHAPES)
  checkpoints.save_params(str(tmp_path / "params"), state.params)
  back = checkpoints.restore_params(str(tmp_path / "params"), setup.abstract_state.params,
                                    setup.shardings.params)
  assert _equal(back, state.params)
  assert back["embedding"].sharding == setup.shardings.params["embedding"]
