"""A student with known outputs, saved as a training run: for end-to-end evaluation tests.

A tiny T5 whose weights make its decoder a Markov chain over tokens: whatever it reads, it writes
"So, the answer is X." with X = A, B, C drawn with probabilities LABEL_PROBS. Every decode parses,
greedy and beam search pick B, and sampled votes vary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kard_jax.data import vocab as vocab_lib
from kard_jax.data.example import Choice, Example, write_examples
from kard_jax.data.jsonl import write_jsonl
from kard_jax.models import t5
from kard_jax.training import checkpoints, models as models_lib
from kard_jax.training.train_state import TrainState
from tests.decoding.toy_models import random_params

LABELS = ("A", "B", "C")
LABEL_PROBS = np.array([0.25, 0.45, 0.30])
NUM_EXAMPLES = 10
BENCHMARK = "synthetic"
STEP = 3


def chain_examples() -> list[Example]:
  colors = ("red", "green", "blue")
  return [Example(id=f"q{i}", question=f"What colour is item {i}?",
                  choices=tuple(Choice(l, c) for l, c in zip(LABELS, colors)),
                  answer=LABELS[(i * 7) % 3]) for i in range(NUM_EXAMPLES)]


def passages(i: int) -> list[str]:
  return [f"Item {i} was painted long ago.", f"Paint fades in the sun {i}."]


def chain_params(cfg: t5.T5Config, vocab):
  """Parameters whose decoder maps the current token to a fixed next-token distribution."""
  module = t5.Transformer(cfg)
  params = jax.tree.map(np.array, random_params(lambda: t5.init_params(module, jax.random.key(0))))
  dec = params["decoder"]
  for name, layer in dec.items():
    if name.startswith("layers_"):  # every residual branch adds zero: output = embedding
      for branch in ("self_attention", "encoder_decoder_attention"):
        layer[branch]["out"]["kernel"] = np.zeros_like(layer[branch]["out"]["kernel"])
      layer["mlp"]["wo"]["kernel"] = np.zeros_like(layer["mlp"]["wo"]["kernel"])
  seqs = {l: vocab.encode(f"So, the answer is {l}.") for l in LABELS}
  split = next(i for i in range(len(seqs["A"]))
               if len({tuple(s[:i + 1]) for s in seqs.values()}) > 1)
  prefix = [0] + list(seqs["A"][:split])  # decoder start token 0, then the shared words
  states = prefix + sorted({s[j] for s in seqs.values() for j in range(split, len(s))})
  assert len(set(states)) == len(states), f"tokens repeat, the chain is ambiguous: {seqs}"
  emb = params["token_embedder"]["embedding"]
  kernel = np.full_like(dec["logits_dense"]["kernel"], -30.0)
  for row, tok in enumerate(states):
    emb[tok] = np.eye(cfg.d_model)[row]
  for a, b in zip(prefix[:-1], prefix[1:]):
    kernel[states.index(a), b] = 10.0
  for label, p in zip(LABELS, LABEL_PROBS):
    s = seqs[label]
    kernel[states.index(prefix[-1]), s[split]] = np.log(p)
    for a, b in zip(s[split:], list(s[split + 1:]) + [1]):
      kernel[states.index(a), b] = 10.0
  dec["logits_dense"]["kernel"] = kernel / np.sqrt(cfg.d_model)  # RMSNorm(one-hot) = sqrt(d) one-hot
  dec["decoder_norm"]["scale"] = np.ones_like(dec["decoder_norm"]["scale"])
  return module, jax.tree.map(jnp.asarray, params)


def write_chain_run(root) -> tuple[str, str]:
  """Writes DATA=root/synthetic (test split, retrieval, vocabulary) and a run; returns the
  (data root, model_dir)."""
  bench = root / BENCHMARK
  examples = chain_examples()
  write_examples(bench / "examples" / "test.jsonl", examples)
  write_jsonl(bench / "retrieval" / "question_test.jsonl", [
      {"id": ex.id, "sample": None, "query": "question",
       "passages": [{"id": f"p{j}", "title": "", "text": t, "score": 1.0}
                    for j, t in enumerate(passages(i))]} for i, ex in enumerate(examples)])
  vocab_lib.train_benchmark_vocab(bench, 120)
  vocab = vocab_lib.load_vocab(bench / "spiece.model")
  cfg = t5.T5Config.tiny(vocab_size=128, dropout_rate=0.0, num_encoder_layers=1,
                         num_decoder_layers=1)
  assert vocab.vocab_size <= cfg.vocab_size
  module, params = chain_params(cfg, vocab)

  model_dir = str(root / "run")
  checkpoints.write_model_config(model_dir, models_lib.EncoderDecoderModel(module).describe())
  ckpt = checkpoints.Checkpointer(model_dir, period=1, use_async=False)
  state = TrainState(step=jnp.asarray(STEP, jnp.int32), params=params,
                     opt_state=optax.sgd(0.1).init(params), rng=jax.random.PRNGKey(0))
  ckpt.save(state, batches_consumed=STEP, force=True)
  ckpt.close()
  return str(root), model_dir
