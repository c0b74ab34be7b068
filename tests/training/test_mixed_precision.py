"""Mixed precision as T5X does it: float32 parameters and optimizer state, bfloat16 activations and
matmuls, float32 logits and loss. One real train step of each on the same batch and parameters."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from kard_jax.models import t5
from kard_jax.training import models, optimizers, partitioning, trainer as trainer_lib

RULES = partitioning.standard_logical_axis_rules()
# The stated tolerance: a bfloat16 step's loss within 1% (relative) of the float32 step's, its
# gradient norm within 5%. bfloat16 keeps 8 significant bits (relative rounding 2**-9 ~ 0.2%).
LOSS_RTOL = 0.01
GRAD_NORM_RTOL = 0.05


def _batch(seed=0, batch=8, inputs=24, targets=12, vocab=128):
  rng = np.random.RandomState(seed)
  enc = rng.randint(2, vocab, (batch, inputs)).astype(np.int32)
  tgt = rng.randint(2, vocab, (batch, targets)).astype(np.int32)
  enc[:, inputs - 5:] = 0
  tgt[:, targets - 3:] = 0
  dec = np.concatenate([np.zeros((batch, 1), np.int32), tgt[:, :-1]], axis=1) * (tgt > 0)
  return {"encoder_input_tokens": enc, "decoder_input_tokens": dec.astype(np.int32),
          "decoder_target_tokens": tgt}


def _step(cfg, params, batch):
  model = models.EncoderDecoderModel(t5.Transformer(cfg), z_loss=1e-4)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  t = trainer_lib.Trainer(model, optimizers.adamw(1e-3), 1e-3, partitioning.create_mesh((1, 1)),
                          RULES, spec)
  state = t.init_state(seed=0, params=jax.tree.map(np.array, params))  # donated by the step
  state, metrics = t.train_step(state, t.global_batch(batch))
  return jax.device_get(state), jax.device_get(metrics)


def test_bf16_step_keeps_float32_state_and_matches_the_float32_loss():
  fp32 = t5.T5Config.tiny(dropout_rate=0.0)
  bf16 = dataclasses.replace(fp32, dtype="bfloat16")
  params = jax.device_get(t5.init_params(t5.Transformer(fp32), jax.random.PRNGKey(0)))
  batch = _batch()
  state32, m32 = _step(fp32, params, batch)
  state16, m16 = _step(bf16, params, batch)
  # Parameters and every optimizer array stay float32 under bfloat16 activations.
  for tree in (state16.params, state16.opt_state):
    floats = {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}
    assert floats == {jnp.dtype("float32")}
  assert m16["loss"].dtype == np.float32
  loss_err = abs(float(m16["loss"]) - float(m32["loss"])) / float(m32["loss"])
  norm_err = abs(float(m16["grad_norm"]) - float(m32["grad_norm"])) / float(m32["grad_norm"])
  # Non-zero: the bfloat16 program really computed in bfloat16.
  assert 0 < loss_err < LOSS_RTOL, loss_err
  assert 0 < norm_err < GRAD_NORM_RTOL, norm_err
  assert float(m16["num_target_tokens"]) == float(m32["num_target_tokens"])


def test_bf16_matmuls_appear_in_the_compiled_program():
  cfg = t5.T5Config.tiny(dtype="bfloat16", dropout_rate=0.0)
  model = t5.Transformer(cfg)
  params = jax.eval_shape(lambda: t5.init_params(model, jax.random.PRNGKey(0)))
  batch = _batch()
  fn = lambda p: model.apply({"params": p}, batch["encoder_input_tokens"],
                             batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                             enable_dropout=False)
  jaxpr = jax.make_jaxpr(fn)(params)
  dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
  low = [e for e in dots if e.invars[0].aval.dtype == jnp.bfloat16]
  # Every matmul but the float32 logits projection reads bfloat16 operands.
  assert len(dots) - len(low) == 1, (len(dots), len(low))
  assert jaxpr.out_avals[0].dtype == jnp.float32
