"""Training throughput: our compiled train step against `transformers`' PyTorch T5 step.

Same model (the Flan-T5-small shape: d_model 512, 8+8 layers, 6 heads of 64, gated-GELU d_ff 1024,
vocabulary 32,128; float32), same weights (exported through our Hugging Face converter), same batch
(8 sequences, 256 input and 64 target tokens), same optimiser (AdamW, lr 1e-4, weight decay 0.01)
and dropout (0.1 in training on both sides; --dropout 0 turns it off). Before timing, the two
models' teacher-forced losses on the batch are compared, as a check that both sides run the same
network. Throughput is target tokens per second of the median step over --steps rounds after
--warmup steps; each round times one step of each side, so both see the same load. Ours runs on the
single device the trainer would use here (mesh (1, 1)).

Like for like: both sides use the same `--threads` cores (default 0: every core this process may
use; the process is pinned to them and PyTorch gets that many threads). Compilation (ours) and the
warm-up steps (both) are excluded from the timed steps and reported separately.

Distance to the physical limit, measured in the same process: the float32 `jnp.dot` rate of this
machine. The model FLOPs of a training step (3 x the forward pass's matmul FLOPs: forward, and the
backward pass's two products) per our step time, as a fraction of that rate, is the headline's
second figure; on a GPU/TPU (the script runs unchanged on the device JAX sees) it also reports MFU
against the accelerator's published peak.

  ./run.sh bench train_step            # or: python bench/train_step.py [--steps 5] [--out FILE]

Writes results/bench_train_step.json (figures + stamp); the last stdout line is the headline JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from kard_jax.report import bench as bench_lib  # noqa: E402

FULL = dict(batch=8, input_length=256, target_length=64)
TINY = dict(batch=2, input_length=16, target_length=8)
LEARNING_RATE, WEIGHT_DECAY = 1e-4, 0.01


def make_batch(seed: int, vocab_size: int, batch: int, input_length: int,
               target_length: int) -> dict[str, np.ndarray]:
  """Full-length rows as SeqIO's EncDecFeatureConverter produces them (unpacked, EOS last)."""
  rng = np.random.default_rng(seed)
  inputs = rng.integers(2, vocab_size, size=(batch, input_length)).astype(np.int32)
  targets = rng.integers(2, vocab_size, size=(batch, target_length)).astype(np.int32)
  inputs[:, -1] = targets[:, -1] = 1
  decoder_inputs = np.concatenate([np.zeros((batch, 1), np.int32), targets[:, :-1]], axis=1)
  return {"encoder_input_tokens": inputs, "decoder_input_tokens": decoder_inputs,
          "decoder_target_tokens": targets,
          "decoder_loss_weights": np.ones_like(targets)}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--dropout", type=float, default=0.1)
  parser.add_argument("--threads", type=int, default=0,
                      help="cores both sides may use (0: all this process may use)")
  parser.add_argument("--seed", type=int, default=0)
  bench_lib.add_flags(parser, "train_step")
  args = parser.parse_args(argv)
  if args.steps < 1 or args.warmup < 1 or args.threads < 0 or not 0 <= args.dropout < 1:
    parser.error("--steps and --warmup must be >= 1, --threads >= 0, 0 <= --dropout < 1")
  n_threads = common.pin_cores(parser, args.threads)  # before JAX/PyTorch make thread pools
  shape = TINY if args.tiny else FULL
  if args.tiny:
    args.steps, args.warmup = min(args.steps, 2), 1

  m = bench_lib.measurement(("jax", "jaxlib", "flax", "optax", "torch", "transformers"),
                            __file__, argv)
  import jax
  import torch
  import transformers

  from kard_jax.models import t5, t5_weights
  from kard_jax.report import limits as limits_lib
  from kard_jax.training import models, optimizers, partitioning, trainer as trainer_lib

  torch.set_num_threads(n_threads)
  torch.set_grad_enabled(True)  # whatever an earlier caller in this process left
  limits = (limits_lib.measure(4 * 2**20, 128, repeats=2) if args.tiny else limits_lib.measure())
  config = (t5.T5Config.tiny(dropout_rate=args.dropout) if args.tiny
            else t5.T5Config.flan_t5("small", dropout_rate=args.dropout))
  model = models.EncoderDecoderModel(t5.Transformer(config))
  batch = make_batch(args.seed, config.vocab_size, **shape)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  tx = optimizers.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY, decay_vectors=True)
  trainer = trainer_lib.Trainer(model, tx, LEARNING_RATE, partitioning.create_mesh((1, 1)),
                                partitioning.standard_logical_axis_rules(), spec)
  state = trainer.init_state(seed=args.seed)
  device_batch = trainer.global_batch(batch)
  platform = jax.devices()[0].platform
  print(f"jax {platform}, torch threads {torch.get_num_threads()}, cores "
        f"{sorted(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores", file=sys.stderr)

  with tempfile.TemporaryDirectory() as folder:
    t5_weights.export_hf(config, jax.device_get(state.params), folder)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(folder)
  ids = torch.as_tensor(batch["encoder_input_tokens"], dtype=torch.long)
  mask = torch.ones_like(ids)
  labels = torch.as_tensor(batch["decoder_target_tokens"], dtype=torch.long)

  # Same network: teacher-forced losses without dropout agree.
  ours_loss = float(jax.jit(lambda p, b: model.loss_fn(p, b, None)[0])(state.params, device_batch))
  hf.eval()
  with torch.no_grad():
    hf_loss = float(hf(input_ids=ids, attention_mask=mask, labels=labels).loss)
  print(f"initial loss: ours {ours_loss:.5f}, transformers {hf_loss:.5f}", file=sys.stderr)
  if abs(ours_loss - hf_loss) > 1e-3 * max(1.0, abs(hf_loss)):
    raise SystemExit(f"the two models disagree: loss {ours_loss} vs {hf_loss}")

  def run_ours(n):
    nonlocal state
    metrics = None
    for _ in range(n):
      state, metrics = trainer.train_step(state, device_batch)
    return float(jax.block_until_ready(metrics)["loss"])

  hf.train()
  opt = torch.optim.AdamW(hf.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY,
                          betas=(0.9, 0.999), eps=1e-8)

  def run_hf(n):
    loss = None
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      loss = hf(input_ids=ids, attention_mask=mask, labels=labels).loss
      loss.backward()
      opt.step()
    return float(loss.detach())

  start = time.perf_counter()
  run_ours(1)
  compile_s = time.perf_counter() - start  # compilation + one step
  start = time.perf_counter()
  run_ours(args.warmup)
  ours_warm_s = (time.perf_counter() - start) / args.warmup
  start = time.perf_counter()
  run_hf(1)
  hf_first_s = time.perf_counter() - start
  run_hf(args.warmup)
  # Interleaved, one step each per round, so that both sides see the same machine load (other
  # processes share these cores); the median step time of each side gives its throughput.
  ours_times, hf_times, ours_last, hf_last = [], [], 0.0, 0.0
  for _ in range(args.steps):
    start = time.perf_counter()
    ours_last = run_ours(1)
    ours_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    hf_last = run_hf(1)
    hf_times.append(time.perf_counter() - start)
  B, T = shape["batch"], shape["target_length"]
  ours_step, hf_step = statistics.median(ours_times), statistics.median(hf_times)
  ours_tps, hf_tps = B * T / ours_step, B * T / hf_step
  step_flops = 3 * limits_lib.t5_forward_flops(config, B, shape["input_length"], T)
  fractions = limits_lib.mfu(step_flops / ours_step, limits)

  figures, about = {}, {}

  def put(name, value, what):
    figures[name], about[name] = value, what

  put("tokens_per_s", ours_tps, f"ours, target tokens/s (median of {args.steps} steps)")
  put("reference_tokens_per_s", hf_tps, "transformers PyTorch step, target tokens/s (same rounds)")
  put("ratio", ours_tps / hf_tps, "ours / reference, same cores, shapes and float32")
  put("ours_step_s", ours_step, "our median step time")
  put("reference_step_s", hf_step, "the reference's median step time")
  put("ours_compile_s", compile_s, "our compilation and first step (excluded from timings)")
  put("ours_warmup_step_s", ours_warm_s, "our mean warm-up step after compilation (excluded)")
  put("reference_first_step_s", hf_first_s, "the reference's first step (excluded)")
  put("ours_last_loss", ours_last, "our training loss at the last timed step")
  put("reference_last_loss", hf_last, "the reference's training loss at the last timed step")
  put("model_gflop_per_step", step_flops / 1e9,
      "3 x the forward pass's matmul FLOPs (encoder, decoder, logits, attention)")
  put("ours_gflop_per_s", step_flops / ours_step / 1e9, "model FLOPs per our step time")
  put("measured_matmul_gflop_per_s", limits["matmul_flops_per_s"] / 1e9,
      "this machine's float32 jnp.dot rate in the same process, GFLOP/s")
  put("fraction_of_measured_matmul", fractions["fraction_of_measured_matmul"],
      "our model FLOP/s / the measured matmul rate")
  for key, value in fractions.items():
    if key.startswith("mfu_"):
      put(key, value, "MFU: our model FLOP/s / the accelerator's published "
          f"{key.split('_')[-2]} peak")
  print(f"ours {ours_tps:.1f} target tokens/s, transformers {hf_tps:.1f} -> ratio "
        f"{ours_tps / hf_tps:.2f}x; compile {compile_s:.1f} s; {step_flops / ours_step / 1e9:.1f} "
        f"GFLOP/s = {100 * fractions['fraction_of_measured_matmul']:.1f}% of the measured "
        f"{limits['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s", file=sys.stderr)

  setup = (f"{'T5 tiny test shape' if args.tiny else 'Flan-T5-small shape'} (d_model "
           f"{config.d_model}, {config.num_encoder_layers}+{config.num_decoder_layers} layers, "
           f"{config.num_heads} heads of {config.head_dim}, d_ff {config.d_ff}, vocabulary "
           f"{config.vocab_size:,}; float32, same initial weights on both sides); batch {B}, "
           f"{shape['input_length']} input and {T} target tokens; AdamW lr {LEARNING_RATE}, weight "
           f"decay {WEIGHT_DECAY}; dropout {args.dropout}; ours on JAX {platform} (mesh (1, 1)), "
           f"the reference on PyTorch CPU; median of {args.steps} interleaved steps after "
           f"{args.warmup} warm-up step(s)")
  bench_lib.finish(
      "train_step", args.out, m, setup=setup,
      headline={"ratio": figures["ratio"],
                "ratio_is": "target tokens/s per training step, ours over transformers "
                            "PyTorch, same cores and shapes",
                "fraction_of_limit": figures["fraction_of_measured_matmul"],
                "limit_is": "our step's model FLOP/s over this machine's measured float32 "
                            "matmul rate"},
      figures=figures, about=about,
      threads={"ours": n_threads if platform == "cpu" else platform,
               "reference": torch.get_num_threads()},
      limits=limits)
  return 0


if __name__ == "__main__":
  sys.exit(main())
