"""Beam search finds the known best sequence where greedy does not, and scores what it returns."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kard_jax.decoding import beam_search, decode
from tests.decoding.toy_models import RecurrentToy, exhaustive_best, log_softmax

# A first-order transition table over {pad 0, eos 1, a 2, b 3, c 4}: greedy takes `a` (0.5) but then
# faces a flat distribution; `b` (0.4) is followed by EOS with 0.9. Best: [b, eos], p = 0.36.
TABLE = np.full((5, 5), 1e-6)
TABLE[0, [2, 3, 4]] = [0.5, 0.4, 0.1]
TABLE[2, [1, 2, 3, 4]] = 0.25
TABLE[3, [1, 2]] = [0.9, 0.1]
TABLE[4, [1]] = 1.0
TABLE[1, [1]] = 1.0
LOG_TABLE = np.log(TABLE / TABLE.sum(1, keepdims=True))


def table_step(tokens_B1, cache, step):
  return jnp.asarray(LOG_TABLE, jnp.float32)[tokens_B1[:, 0]], {"steps": cache["steps"] + 1}


def table_next_logits(prefix):
  return LOG_TABLE[([0] + list(prefix))[-1]]


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_finds_the_exhaustive_best_where_greedy_fails(alpha):
  cache = {"steps": jnp.zeros((2, 1), jnp.int32)}
  first = jnp.zeros((2,), jnp.int32)
  beam = jax.jit(functools.partial(beam_search.beam_search, table_step, beams=2,
                                   max_new_tokens=4, alpha=alpha))(cache, first)
  greedy = jax.jit(functools.partial(decode.greedy_decode, table_step, max_new_tokens=4))(
      cache, first)
  score, seq = exhaustive_best(table_next_logits, 5, 4, alpha)
  assert seq == [3, 1]
  for b in range(2):
    np.testing.assert_array_equal(np.asarray(beam.tokens[b, 0]), [3, 1, 0, 0])
    np.testing.assert_allclose(float(beam.scores[b, 0]), score, rtol=1e-5)
    assert int(beam.lengths[b, 0]) == 2
    assert int(greedy.tokens[b, 0, 0]) == 2  # greedy commits to `a`
    assert float(beam.scores[b, 1]) <= float(beam.scores[b, 0])


def test_beam_scores_equal_recomputed_log_probs_on_a_cached_model():
  # The recurrent toy's logits depend on the whole history through the cache: a wrongly reordered
  # cache would make the returned scores disagree with an uncached recomputation.
  model = RecurrentToy(seed=3, vocab=7, eos_bias=1.5)
  contexts = np.array([0, 1, 2])
  alpha, max_new = 0.6, 4
  out = jax.jit(functools.partial(beam_search.beam_search, model.tokens_to_logits, beams=3,
                                  max_new_tokens=max_new, alpha=alpha))(
      model.init_cache(contexts), jnp.zeros(3, jnp.int32))
  for b, ctx in enumerate(contexts):
    scores = np.asarray(out.scores[b])
    assert (np.diff(scores) <= 1e-6).all(), "hypotheses come best first"
    for k in range(3):
      n = int(out.lengths[b, k])
      seq = list(np.asarray(out.tokens[b, k])[:n])
      assert (np.asarray(out.tokens[b, k])[n:] == decode.PAD_ID).all()
      assert seq[-1] == decode.EOS_ID or n == max_new
      logp = sum(log_softmax(model.next_logits(int(ctx), seq[:i]))[t] for i, t in enumerate(seq))
      np.testing.assert_allclose(scores[k], logp / ((5.0 + n) / 6.0) ** alpha, rtol=1e-4)
    best, _ = exhaustive_best(functools.partial(model.next_logits, int(ctx)), 7, max_new, alpha,
                              forbid=())
    assert scores[0] <= best + 1e-4


def test_min_new_tokens_holds_in_beam_search():
  cache = {"steps": jnp.zeros((1, 1), jnp.int32)}
  out = beam_search.beam_search(table_step, cache, jnp.zeros((1,), jnp.int32), beams=2,
                                max_new_tokens=4, min_new_tokens=3)
  assert (np.asarray(out.lengths) >= 3).all()
  assert decode.EOS_ID not in np.asarray(out.tokens[0, :, :2])


def test_a_cache_array_without_the_beam_rows_is_an_error():
  # A per-row logit bias built for one row: beam search must neither expand nor reorder around
  # it silently.
  model = RecurrentToy(seed=3)
  cache = {**model.init_cache(np.array([0, 1, 2])), "bias": jnp.zeros((1, model.vocab))}

  def step(tokens_B1, cache, t):
    logits, out = model.tokens_to_logits(tokens_B1, cache, t)
    return logits + cache["bias"], {**out, "bias": cache["bias"]}

  with pytest.raises(ValueError, match=r"\['bias'\] of shape \(1, 13\): its batch axis 0"):
    beam_search.beam_search(step, cache, jnp.zeros((3,), jnp.int32), beams=2, max_new_tokens=3)


def test_a_batch_axis_other_than_the_first_is_expanded_and_reordered_along():
  # The same recurrent toy with its state stored transposed ([dim, batch], batch axis 1) finds
  # the same hypotheses as with the batch first.
  model = RecurrentToy(seed=4, eos_bias=0.5)
  contexts = np.array([0, 1, 2])

  def transposed_step(tokens_B1, cache, t):
    logits, out = model.tokens_to_logits(tokens_B1, {"h": cache["hT"].T,
                                                     "index": cache["index"]}, t)
    return logits, {"hT": out["h"].T, "index": out["index"]}

  plain = model.init_cache(contexts)
  transposed = {"hT": plain["h"].T, "index": plain["index"]}
  first = jnp.zeros((3,), jnp.int32)
  want = beam_search.beam_search(model.tokens_to_logits, plain, first, beams=3,
                                 max_new_tokens=5)
  got = beam_search.beam_search(transposed_step, transposed, first, beams=3, max_new_tokens=5,
                                cache_batch_axes={"hT": 1, "index": None})
  np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(want.tokens))
  np.testing.assert_allclose(np.asarray(got.scores), np.asarray(want.scores), rtol=1e-5)
