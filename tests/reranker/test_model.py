"""The trainer model: rank metric, loss with padding and step-driven temperatures, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kard_jax.models import bert
from kard_jax.reranker import model as model_lib
from kard_jax.reranker import scorer as scorer_lib

BERT = bert.BertConfig(vocab_size=50, emb_dim=16, num_heads=2, num_layers=1, mlp_dim=24,
                       max_positions=32, dropout_rate=0.0, attention_dropout_rate=0.0)


def _model(loss="kl", steps=10):
  cfg = scorer_lib.ScorerConfig("late_interaction", compression_dim=8)
  return model_lib.RerankerModel(
      scorer_lib.make_scorer(cfg, BERT), cfg, model_lib.TemperatureSchedule(4.0, 1.0, steps),
      model_lib.TemperatureSchedule(50.0, 5.0, steps), loss=loss)


def _batch(rng, B=4, K=5, Q=6, P=7):
  mask = np.ones((B, K), np.int32)
  mask[1, 3:] = 0
  return {"query_ids": rng.integers(1, 50, (B, Q)).astype(np.int32),
          "query_mask": np.ones((B, Q), np.int32),
          "passage_states": rng.normal(size=(B, K, P, 16)).astype(np.float16),
          "passage_mask": np.ones((B, K, P), np.int32),
          "targets": rng.normal(size=(B, K)).astype(np.float32) * 5,
          "candidate_mask": mask}


def test_target_rank_matches_a_loop_and_counts_ties_against_the_scorer():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 4, (50, 6)).astype(np.float32)  # many ties
  targets = rng.normal(size=(50, 6)).astype(np.float32)
  mask = rng.random((50, 6)) < 0.8
  mask[:, 0] = True
  got = np.asarray(model_lib.target_rank(jnp.asarray(scores), jnp.asarray(targets),
                                         jnp.asarray(mask)))
  np.testing.assert_array_equal(got, model_lib.numpy_rank_reference(scores, targets, mask))
  const = np.asarray(model_lib.target_rank(jnp.zeros((1, 4)), jnp.arange(4.)[None],
                                           jnp.ones((1, 4), bool)))
  assert const.tolist() == [3]


@pytest.fixture(scope="module")
def params():
  model = _model()
  init = jax.jit(lambda k: model.get_initial_variables(k, model.default_input_shapes()))
  return jax.tree.map(lambda x: getattr(x, "value", x), init(jax.random.PRNGKey(0))["params"])


@pytest.mark.parametrize("loss", ["kl", "ce"])
def test_loss_ignores_padding_rows_and_follows_the_step(params, loss):
  model = _model(loss)
  rng = np.random.default_rng(1)
  batch = _batch(rng)
  loss_fn = jax.jit(lambda p, b: model.loss_fn(p, b, None, 4))
  value, metrics = loss_fn(params, batch)
  scores = np.asarray(jax.jit(model.scores)(params, batch))
  tau_t, tau_m = model.tau_target(4), model.tau_model(4)
  mask = batch["candidate_mask"] > 0
  if loss == "kl":
    want = model_lib.kl_loss(scores, batch["targets"], tau_m, tau_t, mask)
  else:
    want = model_lib.cross_entropy_loss(scores, batch["targets"], tau_m, mask)
  np.testing.assert_allclose(float(value), float(want), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["tau_model"]), float(tau_m), rtol=1e-6)
  padded = {k: np.concatenate([v, np.zeros_like(v[:2])]) for k, v in batch.items()}
  value2, metrics2 = loss_fn(params, padded)
  np.testing.assert_allclose(float(value2), float(value), rtol=1e-5)
  assert float(metrics2["loss_denominator"]) == 4.0
  out = jax.jit(model.eval_fn)(params, padded)
  ranks = model_lib.numpy_rank_reference(scores, batch["targets"], mask)
  assert [float(x) for x in out["top1"]] == [float(np.sum(ranks < 1)), 4.0]


def test_a_few_steps_learn_to_rank_the_target_first(params):
  model = _model(steps=1)
  batch = _batch(np.random.default_rng(2))
  tx = optax.adam(3e-3)
  loss_fn = jax.jit(lambda p: model.loss_fn(p, batch, None, 1))

  @jax.jit
  def step(p, state):
    updates, state = tx.update(jax.grad(lambda q: loss_fn(q)[0])(p), state, p)
    return optax.apply_updates(p, updates), state

  p, state = params, tx.init(params)
  first = float(loss_fn(p)[0])
  for _ in range(60):
    p, state = step(p, state)
  last, metrics = loss_fn(p)
  assert float(last) < 0.5 * first
  assert float(metrics["top1"]) == 1.0


def test_the_step_sets_the_temperatures_of_the_loss(params):
  # tau_model anneals 50 -> 5 and tau_target 4 -> 1 over 10 steps: the loss at step 0 and at the
  # last step are the KL at those temperatures, computed here directly, and they differ.
  model = _model(steps=10)
  batch = _batch(np.random.default_rng(3))
  scores = jax.jit(model.scores)(params, batch)
  mask = batch["candidate_mask"] > 0
  loss_fn = jax.jit(lambda p, b, s: model.loss_fn(p, b, None, s))
  got = {}
  for step in (0, 10):
    want = model_lib.kl_loss(scores, batch["targets"], float(model.tau_model(step)),
                             float(model.tau_target(step)), mask)
    value, metrics = loss_fn(params, batch, jnp.asarray(step, jnp.int32))
    np.testing.assert_allclose(float(value), float(want), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["tau_model"]), [50.0, 5.0][step // 10], rtol=1e-5)
    got[step] = float(value)
  assert abs(got[0] - got[10]) > 1e-3 * max(abs(got[0]), 1e-6)
  with pytest.raises(ValueError, match="training step"):
    model.loss_fn(params, batch, None)


def test_the_trainer_passes_its_step_to_the_loss(params):
  # One compiled train step from a state at step 7: the loss it reports is the loss at step 7's
  # temperatures (not step 0's), so the trainer's step reaches the schedules.
  from kard_jax.training import partitioning
  from kard_jax.training import step as step_lib
  from kard_jax.training.train_state import TrainState

  model = _model(steps=10)
  batch = _batch(np.random.default_rng(4))
  tx = optax.sgd(0.0)
  mesh = partitioning.create_mesh((-1, 1))
  train_step = jax.jit(step_lib.make_train_step(model, tx, 0.0, mesh,
                                                partitioning.standard_logical_axis_rules()))
  state = TrainState(step=jnp.asarray(7, jnp.int32), params=params, opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(0))
  with jax.set_mesh(mesh):
    _, metrics = train_step(state, batch)
  want, _ = model.loss_fn(params, batch, None, 7)
  np.testing.assert_allclose(float(metrics["loss"]), float(want), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["tau_model"]), float(model.tau_model(7)), rtol=1e-6)
  assert abs(float(model.tau_model(7)) - float(model.tau_model(0))) > 1.0
