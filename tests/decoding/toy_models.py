"""Tiny step-function models for testing the decoding loops without a Transformer."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np


class RecurrentToy:
  """A random recurrent LM: h' = tanh(h A + E[token]), logits = h' W; the cache is h.

  The start state depends on a per-row context id, so rows of a batch decode differently and a
  cache that is expanded or reordered wrongly changes the output.
  """

  def __init__(self, seed: int = 0, vocab: int = 13, dim: int = 16, contexts: int = 8,
               eos_bias: float = 0.0):
    r = np.random.default_rng(seed)
    self.vocab = vocab
    self.A = jnp.asarray(r.normal(size=(dim, dim)) / np.sqrt(dim), jnp.float32)
    self.E = jnp.asarray(r.normal(size=(vocab, dim)), jnp.float32)
    self.C = jnp.asarray(r.normal(size=(contexts, dim)), jnp.float32)
    W = r.normal(size=(dim, vocab)) * 2.0
    self.W = jnp.asarray(W, jnp.float32)
    self.b = jnp.zeros((vocab,), jnp.float32).at[1].set(eos_bias)

  def init_cache(self, context_B):
    return {"h": self.C[jnp.asarray(context_B)], "index": jnp.zeros((), jnp.int32)}

  def tokens_to_logits(self, tokens_B1, cache, step):
    h = jnp.tanh(cache["h"] @ self.A + self.E[tokens_B1[:, 0]])
    return h @ self.W + self.b, {"h": h, "index": cache["index"] + 1}

  def next_logits(self, context: int, prefix: list[int], first_token: int = 0) -> np.ndarray:
    """Uncached: replays the whole prefix from the start state (numpy float64)."""
    h = np.asarray(self.C[context], np.float64)
    A, E = np.asarray(self.A, np.float64), np.asarray(self.E, np.float64)
    for tok in [first_token] + list(prefix):
      h = np.tanh(h @ A + E[tok])
    return h @ np.asarray(self.W, np.float64) + np.asarray(self.b, np.float64)


def log_softmax(x: np.ndarray) -> np.ndarray:
  x = x - x.max()
  return x - np.log(np.exp(x).sum())


def reference_greedy(next_logits, max_new: int, eos: int = 1) -> tuple[list[int], float]:
  """Step-by-step argmax with full recomputation; returns (tokens up to EOS, log-prob)."""
  out, logp = [], 0.0
  for _ in range(max_new):
    logits = next_logits(out)
    tok = int(np.argmax(logits))
    logp += float(log_softmax(logits)[tok])
    out.append(tok)
    if tok == eos:
      break
  return out, logp


def exhaustive_best(next_logits, vocab: int, max_new: int, alpha: float, eos: int = 1,
                    forbid=(0,)):
  """The best complete hypothesis under beam search's scoring, by enumerating all sequences."""
  memo: dict[tuple[int, ...], np.ndarray] = {}

  def logp_next(prefix):
    if prefix not in memo:
      memo[prefix] = log_softmax(next_logits(list(prefix)))
    return memo[prefix]

  best = (-np.inf, None)
  for n in range(1, max_new + 1):
    for seq in itertools.product([t for t in range(vocab) if t not in forbid], repeat=n):
      if eos in seq[:-1] or (n < max_new and seq[-1] != eos):
        continue
      logp = sum(logp_next(seq[:i])[t] for i, t in enumerate(seq))
      score = logp / ((5.0 + n) / 6.0) ** alpha
      best = max(best, (score, list(seq)), key=lambda x: x[0])
  return best


def random_params(init_fn, seed: int = 0, gain: float = 1.0):
  """Random parameters shaped like `init_fn()`'s, drawn in numpy: no initialiser is compiled.

  Matrices get N(0, gain^2 / fan_in) (embeddings N(0, 1)), vectors 1 + N(0, 0.1^2), so norms,
  scales and biases are all non-trivial and activations stay O(1).
  """
  import flax.linen as nn
  import jax

  shapes = jax.eval_shape(init_fn)
  rng = np.random.default_rng(seed)

  def draw(path, s):
    name = str(path[-1])
    if len(s.shape) == 1:
      return jnp.asarray(1.0 + 0.1 * rng.normal(size=s.shape), s.dtype)
    std = 1.0 if "embedding" in name else gain / np.sqrt(s.shape[0])
    return jnp.asarray(std * rng.normal(size=s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(draw, nn.meta.unbox(shapes))
