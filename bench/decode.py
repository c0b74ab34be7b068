"""Decoding throughput: our compiled decoder against `transformers` `generate` (PyTorch).

Same model (the Flan-T5-small shape: d_model 512, 8+8 layers, 6 heads of 64, gated-GELU d_ff 1024,
vocabulary 32,128; random weights, float32), same inputs (batch 8 x 256 tokens) and the same work:
exactly 64 new tokens per sequence (EOS is forbidden before then on both sides, via
`min_new_tokens`). Two settings: greedy, and 5 samples per input with top-k 50 / top-p 0.95.
Both sides include the encoder, as a `generate` call does. The weights reach PyTorch through our
Hugging Face exporter, and greedy outputs are compared token by token as a check that both sides
run the same model.

Like for like: both run in this process on the same `--threads` cores (default 1): the process is
pinned to them and PyTorch uses that many threads; both decode the whole batch per call (the
headline, `greedy_ratio`). Compilation (ours) and the first call (theirs) are excluded from the
timed calls and reported separately. Times are the best of `--repeats` calls. The reference also
runs one question per call, as the official KARD evaluation code calls `generate`: a second, named
figure (`*_ratio_vs_per_question`), not the headline.

Distance to the physical limit, measured in the same process on the same cores: the streaming
bandwidth of `jnp.sum` over a large array. A greedy decoder step must read the decoder's weights
(less the embedding table, of which it reads 8 rows, and the cross-attention key/value kernels,
whose projections are cached) and the whole key/value cache; that many bytes per measured step time
(the greedy call less our encoder's time, over 64 steps) as a fraction of the bandwidth is the
headline's second figure. On a GPU/TPU the same script runs unchanged on the device JAX sees (no
pinning then matters to JAX) and also reports the fraction of the published bandwidth.

  ./run.sh bench decode            # or: python bench/decode.py [--threads 2] [--out FILE]

Writes results/bench_decode.json (figures + stamp); the last stdout line is the headline JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common as bench_common  # noqa: E402
from kard_jax.report import bench as bench_lib  # noqa: E402

FULL = dict(batch=8, input_length=256, new_tokens=64, samples=5, top_k=50, top_p=0.95)
TINY = dict(batch=2, input_length=16, new_tokens=4, samples=2, top_k=5, top_p=0.95)


def _timed(fn, repeats: int) -> tuple[float, float]:
  """(best wall seconds, CPU seconds of that call) over `repeats` calls."""
  best = (float("inf"), float("inf"))
  for _ in range(repeats):
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
  return best


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--threads", type=int, default=1,
                      help="cores both sides may use (0: no pinning, each library's default)")
  parser.add_argument("--seed", type=int, default=0)
  bench_lib.add_flags(parser, "decode")
  args = parser.parse_args(argv)
  if args.repeats < 1 or args.threads < 0:
    parser.error("--repeats must be >= 1 and --threads >= 0")
  bench_common.pin_cores(parser, args.threads)  # before JAX or PyTorch create their thread pools
  shape = TINY if args.tiny else FULL
  B, S, N = shape["batch"], shape["input_length"], shape["new_tokens"]

  m = bench_lib.measurement(("jax", "jaxlib", "flax", "torch", "transformers"), __file__, argv)
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import torch
  import transformers

  from kard_jax.decoding import adapters
  from kard_jax.models import t5, t5_weights
  from kard_jax.report import limits as limits_lib

  limits = (limits_lib.measure(4 * 2**20, 128, repeats=2) if args.tiny else limits_lib.measure())
  config = (t5.T5Config.tiny(dropout_rate=0.0) if args.tiny
            else t5.T5Config.flan_t5("small", dropout_rate=0.0))
  module = t5.Transformer(config)
  params = jax.jit(lambda k: nn.meta.unbox(t5.init_params(module, k)))(jax.random.key(args.seed))
  rng = np.random.default_rng(args.seed)
  inputs = rng.integers(2, config.vocab_size, size=(B, S)).astype(np.int32)
  inputs[:, -1] = 1  # EOS, as SeqIO appends it

  if args.threads > 0:
    torch.set_num_threads(args.threads)
  with tempfile.TemporaryDirectory() as folder:
    t5_weights.export_hf(config, params, folder)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()

  common = dict(max_new_tokens=N, min_new_tokens=N)
  settings = {
      "greedy": (adapters.DecodeConfig(method="greedy", **common), dict(do_sample=False)),
      "sampling": (adapters.DecodeConfig(method="sample", num_decodes=shape["samples"],
                                         top_k=shape["top_k"], top_p=shape["top_p"], **common),
                   dict(do_sample=True, top_k=shape["top_k"], top_p=shape["top_p"],
                        num_return_sequences=shape["samples"])),
  }
  ids = torch.as_tensor(inputs, dtype=torch.long)
  mask = torch.ones_like(ids)
  jax_inputs = jnp.asarray(inputs)
  key = jax.random.key(args.seed)
  platform = jax.devices()[0].platform
  print(f"jax {platform}, torch threads {torch.get_num_threads()}, pinned to cores "
        f"{sorted(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores", file=sys.stderr)

  figures, about = {}, {}

  def put(name, value, what):
    figures[name], about[name] = value, what

  encode = jax.jit(lambda p, x: module.apply({"params": p}, x, enable_dropout=False,
                                             method=t5.Transformer.encode))
  encoder_s, _ = _timed(lambda: jax.block_until_ready(encode(params, jax_inputs)),
                        args.repeats + 1)
  for name, (ours_cfg, hf_kwargs) in settings.items():
    generate = adapters.make_generate_fn("t5", module, ours_cfg)
    start = time.perf_counter()
    compiled = generate.lower(params, jax_inputs, key).compile()
    compile_s = time.perf_counter() - start
    out = {}

    def run_ours():
      out["ours"] = jax.block_until_ready(compiled(params, jax_inputs, key))

    def run_hf(new_tokens=N):
      with torch.inference_mode():
        out["hf"] = hf.generate(input_ids=ids, attention_mask=mask, num_beams=1,
                                max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                **hf_kwargs)

    def run_hf_per_question():  # the official KARD evaluation: one question per call
      with torch.inference_mode():
        for i in range(B):
          hf.generate(input_ids=ids[i:i + 1], attention_mask=mask[i:i + 1], num_beams=1,
                      max_new_tokens=N, min_new_tokens=N, **hf_kwargs)

    start = time.perf_counter()
    run_hf(2)  # the reference's first call (allocator, kernels), excluded like our compilation
    warmup_s = time.perf_counter() - start
    run_ours()  # first execution of the compiled program, excluded too
    ours_wall, ours_cpu = _timed(run_ours, args.repeats)
    hf_wall, hf_cpu = _timed(run_hf, args.repeats)
    per_q_wall, _ = _timed(run_hf_per_question, args.repeats)
    tokens = B * ours_cfg.outputs_per_input * N
    produced = np.asarray(out["ours"].lengths)
    assert (produced == N).all(), f"ours produced lengths {np.unique(produced)}"
    assert out["hf"].shape[-1] == N + 1, out["hf"].shape
    label = "greedy" if name == "greedy" else f"{shape['samples']} samples per input"
    put(f"{name}_tokens_per_s", tokens / ours_wall, f"ours, {label}, new tokens/s (batched)")
    put(f"reference_{name}_tokens_per_s", tokens / hf_wall,
        f"transformers generate, {label}, new tokens/s (batched)")
    put(f"{name}_ratio", hf_wall / ours_wall, f"ours / batched generate, {label} (wall time)")
    put(f"{name}_cpu_ratio", hf_cpu / ours_cpu, f"the same in CPU seconds (less load-sensitive)")
    put(f"reference_per_question_{name}_tokens_per_s", tokens / per_q_wall,
        f"generate one question per call (as the official KARD code), {label}")
    put(f"{name}_ratio_vs_per_question", per_q_wall / ours_wall,
        f"ours / one-question-per-call generate, {label}")
    put(f"ours_compile_s_{name}", compile_s, f"our compilation, {label} (excluded from timings)")
    put(f"reference_first_call_s_{name}", warmup_s,
        f"generate's first (2-token) call, {label} (excluded from timings)")
    line = (f"{name:9s} ours {tokens / ours_wall:8.1f} tok/s ({ours_wall:.2f} s)   transformers "
            f"{tokens / hf_wall:8.1f} tok/s ({hf_wall:.2f} s)   ratio {hf_wall / ours_wall:.2f}x "
            f"(cpu {hf_cpu / ours_cpu:.2f}x); one question per call {tokens / per_q_wall:.1f} "
            f"tok/s -> {per_q_wall / ours_wall:.2f}x; compile {compile_s:.1f} s")
    if name == "greedy":
      theirs = out["hf"].numpy()[:, 1:]
      agreement = float((np.asarray(out["ours"].tokens[:, 0]) == theirs).mean())
      put("greedy_token_agreement", agreement,
          "share of greedy tokens identical on both sides (same model check)")
      line += f"; greedy token agreement {agreement:.3f}"
      greedy_wall = ours_wall
    print(line, file=sys.stderr, flush=True)

  # The bandwidth bound of one greedy decoder step.
  cross_kv = lambda path: "encoder_decoder_attention" in path and path[-2] in ("key", "value")  # noqa
  weight_bytes = limits_lib.tree_bytes(params["decoder"], lambda p: not cross_kv(p))
  if config.tie_word_embeddings:
    weight_bytes += limits_lib.tree_bytes(params["token_embedder"])
  cache = jax.eval_shape(lambda: t5.init_decode_cache(module, B, S, N))
  cache_bytes = limits_lib.tree_bytes(cache)
  # Our greedy call less our encoder, per step; if timing noise makes that non-positive (tiny
  # shapes), the whole call per step: an upper bound on the step time, so a lower bound on the rate.
  step_s = (greedy_wall - encoder_s) / N if greedy_wall > encoder_s else greedy_wall / N
  step_bytes = weight_bytes + cache_bytes
  fractions = limits_lib.bandwidth_fraction(step_bytes / step_s, limits)
  put("ours_encoder_s", encoder_s, "our encoder alone on the batch (subtracted below)")
  put("ours_greedy_step_ms", 1e3 * step_s, "one greedy decoder step: (greedy call - encoder) / steps")
  put("bytes_read_per_step", step_bytes,
      f"decoder weights ({weight_bytes:,} B, no embedding table or cross K/V kernels) + "
      f"key/value cache ({cache_bytes:,} B)")
  put("step_read_gb_per_s", step_bytes / step_s / 1e9, "bytes read per step / step time, GB/s")
  put("measured_bandwidth_gb_per_s", limits["bandwidth_bytes_per_s"] / 1e9,
      "this machine's streaming bandwidth on the same cores (jnp.sum), GB/s")
  put("measured_matmul_gflop_per_s", limits["matmul_flops_per_s"] / 1e9,
      "this machine's float32 jnp.dot rate on the same cores, GFLOP/s")
  put("greedy_step_fraction_of_bandwidth", fractions["fraction_of_measured_bandwidth"],
      "step read rate / measured bandwidth (1 = bandwidth-bound optimum)")
  if "fraction_of_published_bandwidth" in fractions:
    put("greedy_step_fraction_of_published_bandwidth",
        fractions["fraction_of_published_bandwidth"],
        "step read rate / the accelerator's published memory bandwidth")
  print(f"greedy step {1e3 * step_s:.1f} ms reads {step_bytes / 1e6:.1f} MB -> "
        f"{step_bytes / step_s / 1e9:.2f} GB/s = "
        f"{100 * fractions['fraction_of_measured_bandwidth']:.1f}% of the measured "
        f"{limits['bandwidth_bytes_per_s'] / 1e9:.2f} GB/s", file=sys.stderr)

  threads = torch.get_num_threads()
  ours_threads = len(os.sched_getaffinity(0)) if platform == "cpu" else platform
  setup = (f"{'T5 tiny test shape' if args.tiny else 'Flan-T5-small shape'} (d_model "
           f"{config.d_model}, {config.num_encoder_layers}+{config.num_decoder_layers} layers, "
           f"{config.num_heads} heads of {config.head_dim}, d_ff {config.d_ff}, vocabulary "
           f"{config.vocab_size:,}; random weights, float32 on both sides); batch {B} x {S} input "
           f"tokens, exactly {N} new tokens; greedy, and {shape['samples']} samples per input "
           f"with top-k {shape['top_k']} / top-p {shape['top_p']}; ours on JAX {platform}, the "
           f"reference transformers generate on PyTorch CPU; best of {args.repeats} calls")
  bench_lib.finish(
      "decode", args.out, m, setup=setup,
      headline={"ratio": figures["greedy_ratio"],
                "ratio_is": "greedy tokens/s, ours over batched generate, same cores and shapes",
                "fraction_of_limit": figures["greedy_step_fraction_of_bandwidth"],
                "limit_is": "greedy decoder step's read rate over this machine's measured "
                            "streaming bandwidth"},
      figures=figures, about=about, threads={"ours": ours_threads, "reference": threads},
      limits=limits)
  return 0


if __name__ == "__main__":
  sys.exit(main())
