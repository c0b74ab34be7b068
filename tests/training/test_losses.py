"""Cross-entropy, label smoothing, z-loss and normalisation against a plain numpy computation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kard_jax.training import losses, models
from tests.training import toy_models


def _np_log_softmax(logits):
  m = logits.max(-1, keepdims=True)
  z = np.log(np.exp(logits - m).sum(-1, keepdims=True)) + m
  return logits - z, z[..., 0]


def _np_token_loss(logits, targets, smoothing, z_coef):
  """T5X's definition, written out: CE against smoothed one-hot, minus its entropy, plus z-loss."""
  logits = logits.astype(np.float64)
  vocab = logits.shape[-1]
  logp, log_z = _np_log_softmax(logits)
  q = np.full(logits.shape, smoothing / (vocab - 1))
  np.put_along_axis(q, targets[..., None], 1.0 - smoothing, axis=-1)
  entropy = -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0), axis=-1)
  return -(q * logp).sum(-1) - entropy + z_coef * log_z ** 2, z_coef * log_z ** 2


@pytest.mark.parametrize("smoothing,z_coef", [(0.0, 0.0), (0.1, 0.0), (0.0, 1e-2), (0.2, 1e-4)])
def test_token_cross_entropy_matches_numpy(smoothing, z_coef):
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=3.0, size=(3, 5, 11)).astype(np.float32)
  targets = rng.integers(0, 11, size=(3, 5))
  loss, z = jax.jit(losses.token_cross_entropy, static_argnums=(2, 3))(logits, targets, smoothing,
                                                                       z_coef)
  want_loss, want_z = _np_token_loss(logits, targets, smoothing, z_coef)
  np.testing.assert_allclose(np.asarray(loss), want_loss, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(z), want_z, rtol=1e-5, atol=1e-7)


def test_smoothed_loss_is_zero_for_the_smoothed_distribution():
  vocab, smoothing = 7, 0.3
  q = np.full((1, 1, vocab), smoothing / (vocab - 1))
  q[0, 0, 2] = 1 - smoothing
  loss, _ = losses.token_cross_entropy(jnp.log(jnp.asarray(q, jnp.float32)), jnp.array([[2]]),
                                       smoothing)
  assert abs(float(loss[0, 0])) < 1e-5


def test_z_loss_gradient_pushes_log_z_to_zero():
  logits = jnp.full((1, 1, 4), 3.0)
  grad = jax.grad(lambda l: losses.token_cross_entropy(l, jnp.array([[0]]), 0.0, 1.0)[0].sum())(
      logits)
  # d/dl [CE + log(Z)^2] = softmax - onehot + 2 log Z softmax; log Z = 3 + log 4 > 0.
  log_z = 3.0 + np.log(4.0)
  want = np.full(4, 0.25) * (1 + 2 * log_z) - np.eye(4)[0]
  np.testing.assert_allclose(np.asarray(grad[0, 0]), want, rtol=1e-5)


def test_normalizers():
  targets = jnp.array([[5, 6, 0, 0], [7, 0, 0, 0]])
  weights = jnp.array([[2.0, 2.0, 0, 0], [0.5, 0, 0, 0]])
  w, den = losses.loss_weights_and_normalizer(targets, None, "num_real_target_tokens")
  assert float(den) == 3 and np.asarray(w).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0]]
  w, den = losses.loss_weights_and_normalizer(targets, weights, "num_real_target_tokens")
  assert float(den) == 3  # tokens counted, so weights scale the loss instead of cancelling
  np.testing.assert_allclose(np.asarray(w), np.asarray(weights))
  _, den = losses.loss_weights_and_normalizer(targets, None, "num_total_target_tokens")
  assert float(den) == 8
  _, den = losses.loss_weights_and_normalizer(targets, None, 4.0)
  assert float(den) == 4
  w, den = losses.loss_weights_and_normalizer(targets, None, "average_per_sequence")
  np.testing.assert_allclose(np.asarray(w), [[0.5, 0.5, 0, 0], [1, 0, 0, 0]])
  assert float(den) == pytest.approx(2.0)
  with pytest.raises(ValueError, match="loss_normalizing_factor"):
    losses.loss_weights_and_normalizer(targets, None, "per_banana")


def test_segment_all_correct_counts_packed_segments():
  correct = jnp.array([[1, 1, 0, 1, 1, 0], [1, 0, 1, 1, 1, 1]])
  real = jnp.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])
  segs = jnp.array([[1, 1, 2, 3, 3, 0], [1, 1, 1, 2, 0, 0]])
  good, num = losses.segment_all_correct(correct, real, segs)
  # Segments: r0 {1: ok, 2: wrong, 3: ok}, r1 {1: wrong, 2: ok}.
  assert (float(good), float(num)) == (3.0, 5.0)
  good, num = losses.segment_all_correct(correct, real, None)
  assert (float(good), float(num)) == (0.0, 2.0)


def test_encoder_decoder_loss_fn_matches_numpy():
  """The model's loss: weighted per-token loss summed, divided by the number of real targets."""
  model = models.EncoderDecoderModel(toy_models.TinyEncDec(), label_smoothing=0.1, z_loss=1e-3)
  batch = toy_models.token_batches(1, encdec=True)[0]
  shapes = {k: v.shape for k, v in batch.items()}
  variables = jax.jit(lambda k: model.get_initial_variables(k, shapes))(jax.random.PRNGKey(0))
  params = jax.tree.map(np.asarray, nn.meta.unbox(variables["params"]))
  loss, metrics = jax.jit(lambda p, b: model.loss_fn(p, b, None))(params, batch)
  logits = np.asarray(model.module.apply({"params": params}, batch["encoder_input_tokens"],
                                         batch["decoder_input_tokens"],
                                         batch["decoder_target_tokens"], enable_dropout=False))
  token_loss, _ = _np_token_loss(logits, batch["decoder_target_tokens"], 0.1, 1e-3)
  w = batch["decoder_loss_weights"]
  want = (token_loss * w).sum() / (w > 0).sum()
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  assert float(metrics["num_target_tokens"]) == (w > 0).sum()
  pred = logits.argmax(-1)
  want_acc = ((pred == batch["decoder_target_tokens"]) * (w > 0)).sum() / (w > 0).sum()
  np.testing.assert_allclose(float(metrics["accuracy"]), want_acc, rtol=1e-6)

  ev = jax.jit(model.eval_fn)(params, batch)
  nll, _ = _np_token_loss(logits, batch["decoder_target_tokens"], 0.0, 0.0)
  np.testing.assert_allclose(float(ev["loss"][0]) / float(ev["loss"][1]),
                             (nll * (w > 0)).sum() / (w > 0).sum(), rtol=1e-5)
  seq_ok = [all(pred[i, j] == batch["decoder_target_tokens"][i, j]
                for j in range(w.shape[1]) if w[i, j] > 0) for i in range(w.shape[0])]
  assert float(ev["sequence_accuracy"][0]) == sum(seq_ok)
  assert float(ev["sequence_accuracy"][1]) == w.shape[0]
