"""Decoding throughput: our compiled decoder against `transformers` `generate` (PyTorch, CPU).

Same model (the Flan-T5-small shape: d_model 512, 8+8 layers, 6 heads of 64, gated-GELU d_ff 1024,
vocabulary 32,128; random weights, float32), same inputs (batch 8 x 256 tokens) and the same work:
exactly 64 new tokens per sequence (EOS is forbidden before then on both sides, via
`min_new_tokens`). Two settings: greedy, and 5 samples per input with top-k 50 / top-p 0.95.
Both sides include the encoder, as a `generate` call does. The weights reach PyTorch through our
Hugging Face exporter, and greedy outputs are compared token by token as a check that both sides
run the same model.

Both run in this process on the same `--threads` cores (default 1): the process is pinned to them
and PyTorch uses that many threads. On a shared machine this keeps oversubscribed, spinning thread
pools from distorting either side (unpinned, PyTorch's were slowed down ~20x here by other load). Times are the best of
`--repeats` calls after a warm-up (ours: compiled ahead of time; theirs: a 2-token call); CPU
seconds are printed too, being less sensitive to other load than wall time.

  ./run.sh bench decode            # or: .venv/bin/python bench/decode.py --threads 2

The reference runs twice: batched like ours (`generate` on all 8 inputs), and one question per
call, as the official KARD evaluation code uses `generate`.
The last line of stdout is {"greedy_ratio": r1, "sampling_ratio": r2, ...}: our tokens/s over
batched `generate`'s, then over per-question `generate`'s (`*_vs_per_question`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BATCH, INPUT_LENGTH, NEW_TOKENS, SAMPLES, TOP_K, TOP_P = 8, 256, 64, 5, 50, 0.95


def _timed(fn, repeats: int) -> tuple[float, float]:
  """(best wall seconds, CPU seconds of that call) over `repeats` calls."""
  best = (float("inf"), float("inf"))
  for _ in range(repeats):
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
  return best


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--threads", type=int, default=1,
                      help="cores both sides may use (0: no pinning, each library's default)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  if args.threads > 0:  # before JAX or PyTorch create their thread pools
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import torch
  import transformers

  from kard_jax.decoding import adapters
  from kard_jax.models import t5, t5_weights

  config = t5.T5Config.flan_t5("small", dropout_rate=0.0)
  module = t5.Transformer(config)
  params = jax.jit(lambda k: nn.meta.unbox(t5.init_params(module, k)))(jax.random.key(args.seed))
  rng = np.random.default_rng(args.seed)
  inputs = rng.integers(2, config.vocab_size, size=(BATCH, INPUT_LENGTH)).astype(np.int32)
  inputs[:, -1] = 1  # EOS, as SeqIO appends it

  if args.threads > 0:
    torch.set_num_threads(args.threads)
  with tempfile.TemporaryDirectory() as folder:
    t5_weights.export_hf(config, params, folder)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()

  common = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
  settings = {
      "greedy": (adapters.DecodeConfig(method="greedy", **common), dict(do_sample=False)),
      "sampling": (adapters.DecodeConfig(method="sample", num_decodes=SAMPLES, top_k=TOP_K,
                                         top_p=TOP_P, **common),
                   dict(do_sample=True, top_k=TOP_K, top_p=TOP_P,
                        num_return_sequences=SAMPLES)),
  }
  ids = torch.as_tensor(inputs, dtype=torch.long)
  mask = torch.ones_like(ids)
  jax_inputs = jnp.asarray(inputs)
  key = jax.random.key(args.seed)
  print(f"jax {jax.devices()[0].platform}, torch threads {torch.get_num_threads()}, pinned to "
        f"cores {sorted(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores")

  ratios = {}
  for name, (ours_cfg, hf_kwargs) in settings.items():
    generate = adapters.make_generate_fn("t5", module, ours_cfg)
    compiled = generate.lower(params, jax_inputs, key).compile()
    out = {}

    def run_ours():
      out["ours"] = jax.block_until_ready(compiled(params, jax_inputs, key))

    def run_hf(new_tokens=NEW_TOKENS):
      with torch.inference_mode():
        out["hf"] = hf.generate(input_ids=ids, attention_mask=mask, num_beams=1,
                                max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                **hf_kwargs)

    def run_hf_per_question():  # the official KARD evaluation: one question per call
      with torch.inference_mode():
        for i in range(BATCH):
          hf.generate(input_ids=ids[i:i + 1], attention_mask=mask[i:i + 1], num_beams=1,
                      max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, **hf_kwargs)

    run_hf(2)  # warm-up
    ours_wall, ours_cpu = _timed(run_ours, args.repeats)
    hf_wall, hf_cpu = _timed(run_hf, args.repeats)
    per_q_wall, _ = _timed(run_hf_per_question, args.repeats)
    tokens = BATCH * ours_cfg.outputs_per_input * NEW_TOKENS
    ratios[name] = hf_wall / ours_wall
    ratios[name + "_per_question"] = per_q_wall / ours_wall
    produced = np.asarray(out["ours"].lengths)
    assert (produced == NEW_TOKENS).all(), f"ours produced lengths {np.unique(produced)}"
    assert out["hf"].shape[-1] == NEW_TOKENS + 1, out["hf"].shape
    line = (f"{name:9s} ours {tokens / ours_wall:8.1f} tok/s ({ours_wall:.2f} s, cpu "
            f"{ours_cpu:.2f} s)   transformers {tokens / hf_wall:8.1f} tok/s ({hf_wall:.2f} s, "
            f"cpu {hf_cpu:.2f} s)   ratio {ratios[name]:.2f}x (cpu {hf_cpu / ours_cpu:.2f}x)")
    if name == "greedy":
      theirs = out["hf"].numpy()[:, 1:]
      agree = float((np.asarray(out["ours"].tokens[:, 0]) == theirs).mean())
      line += f"   greedy token agreement {agree:.3f}"
    line += (f"\n{'':9s} transformers one question per call (as the official KARD code) "
             f"{tokens / per_q_wall:8.1f} tok/s ({per_q_wall:.2f} s)   ratio "
             f"{ratios[name + '_per_question']:.2f}x")
    print(line, flush=True)

  print(json.dumps({"greedy_ratio": round(ratios["greedy"], 3),
                    "sampling_ratio": round(ratios["sampling"], 3),
                    "greedy_ratio_vs_per_question": round(ratios["greedy_per_question"], 3),
                    "sampling_ratio_vs_per_question": round(ratios["sampling_per_question"], 3)}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
