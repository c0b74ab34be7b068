"""The compiled greedy/sampling loop against a step-by-step Python reference on a toy model."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kard_jax.decoding import decode
from tests.decoding.toy_models import RecurrentToy, log_softmax, reference_greedy

CONTEXTS = np.array([0, 1, 2, 3, 4, 5])


def _greedy(model, max_new, **kw):
  fn = jax.jit(functools.partial(decode.greedy_decode, model.tokens_to_logits,
                                 max_new_tokens=max_new, **kw))
  return fn(model.init_cache(CONTEXTS), jnp.zeros(len(CONTEXTS), jnp.int32))


def test_greedy_matches_stepwise_argmax_and_stops_at_eos():
  model = RecurrentToy(seed=0, eos_bias=2.5)
  out = _greedy(model, max_new=12)
  ended_early = 0
  for b, ctx in enumerate(CONTEXTS):
    want, want_logp = reference_greedy(functools.partial(model.next_logits, int(ctx)), 12)
    got = np.asarray(out.tokens[b, 0])
    np.testing.assert_array_equal(got[:len(want)], want)
    assert (got[len(want):] == decode.PAD_ID).all()
    assert int(out.lengths[b, 0]) == len(want)
    np.testing.assert_allclose(float(out.scores[b, 0]), want_logp, rtol=1e-4)
    ended_early += len(want) < 12
  assert 0 < ended_early < len(CONTEXTS), "the toy should stop some rows at EOS and not others"


def test_min_new_tokens_forbids_early_eos():
  model = RecurrentToy(seed=0, eos_bias=2.5)
  out = _greedy(model, max_new=8, min_new_tokens=8)
  assert (np.asarray(out.lengths) == 8).all()
  assert (np.asarray(out.tokens) != decode.EOS_ID).all()


def _sampler(model, **kw):
  fn = jax.jit(functools.partial(decode.sample_decode, model.tokens_to_logits, **kw))
  return lambda rng: fn(model.init_cache(CONTEXTS), jnp.zeros(len(CONTEXTS), jnp.int32), rng)


def test_sampling_fixed_seed_reproduces_and_log_probs_are_the_models():
  model = RecurrentToy(seed=1, eos_bias=1.0)
  sampler = _sampler(model, max_new_tokens=10, num_samples=4, temperature=1.3, top_k=6,
                     top_p=0.9)
  a, b, c = sampler(jax.random.key(7)), sampler(jax.random.key(7)), sampler(jax.random.key(8))
  np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
  assert (np.asarray(a.tokens) != np.asarray(c.tokens)).any()
  assert a.tokens.shape == (len(CONTEXTS), 4, 10)
  for bi, ctx in enumerate(CONTEXTS):
    for n in range(4):
      seq = np.asarray(a.tokens[bi, n])[:int(a.lengths[bi, n])]
      assert (np.asarray(a.tokens[bi, n])[len(seq):] == decode.PAD_ID).all()
      assert decode.EOS_ID not in seq[:-1]
      logp = sum(log_softmax(model.next_logits(int(ctx), list(seq[:i])))[t]
                 for i, t in enumerate(seq))
      np.testing.assert_allclose(float(a.scores[bi, n]), logp, rtol=1e-4)


def test_samples_of_one_input_use_that_inputs_cache():
  # A near-deterministic model: every sample of input b must equal input b's greedy decode.
  model = RecurrentToy(seed=2, eos_bias=0.5)
  model.W = model.W * 50.0
  greedy = _greedy(model, max_new=9)
  sampled = _sampler(model, max_new_tokens=9, num_samples=3)(jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(sampled.tokens),
                                np.repeat(np.asarray(greedy.tokens), 3, axis=1))


def test_expand_batch_repeats_rows_and_rejects_non_batch_arrays():
  tree = {"k": jnp.arange(6).reshape(3, 2), "index": jnp.zeros((), jnp.int32),
          "bias": jnp.ones((1, 4))}
  out = decode.expand_batch(tree, 3, 2, {"k": 0, "index": None, "bias": None})
  np.testing.assert_array_equal(np.asarray(out["k"])[:, 0], [0, 0, 2, 2, 4, 4])
  assert out["index"].shape == () and out["bias"].shape == (1, 4)
  with pytest.raises(ValueError, match=r"\['x'\] of shape \(5, 2\): its batch axis 0"):
    decode.expand_batch({"x": jnp.ones((5, 2))}, 3, 2)


class _BiasedToy(RecurrentToy):
  """RecurrentToy whose cache also holds a logit bias per row ("bias"), read and kept as is."""

  def tokens_to_logits(self, tokens_B1, cache, step):
    logits, out = super().tokens_to_logits(tokens_B1, cache, step)
    return logits + cache["bias"], {**out, "bias": cache["bias"]}


def _biased_cache(model, rows):
  cache = model.init_cache(CONTEXTS[:3])
  bias = jnp.zeros((rows, model.vocab)).at[:, 4].set(3.0)
  return {**cache, "bias": bias}


def test_a_cache_array_without_the_batch_rows_is_an_error():
  # A cache array built for one row while the batch has three: it must not be silently left
  # unexpanded (every row would read row 0's), whatever its leading dimension.
  model = _BiasedToy(seed=3)
  cache = _biased_cache(model, rows=1)
  first = jnp.zeros((3,), jnp.int32)
  with pytest.raises(ValueError, match=r"\['bias'\] of shape \(1, 13\): its batch axis 0"):
    decode.sample_decode(model.tokens_to_logits, cache, first, jax.random.key(0),
                         max_new_tokens=4, num_samples=2)
  # Declared shared (no batch axis), the same array is used by every row as it is.
  axes = {"h": 0, "index": None, "bias": None}
  shared = decode.sample_decode(model.tokens_to_logits, cache, first, jax.random.key(0),
                                max_new_tokens=4, num_samples=2, cache_batch_axes=axes)
  per_row = decode.sample_decode(model.tokens_to_logits, _biased_cache(model, rows=3), first,
                                 jax.random.key(0), max_new_tokens=4, num_samples=2)
  np.testing.assert_array_equal(np.asarray(shared.tokens), np.asarray(per_row.tokens))


def test_cache_axes_must_match_the_cache():
  with pytest.raises(ValueError, match="do not match the cache"):
    decode.expand_batch({"k": jnp.ones((3, 2))}, 3, 2, {"k": 0, "v": 0})
