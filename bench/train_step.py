"""Training throughput: our compiled train step against `transformers`' PyTorch T5 step (CPU).

Same model (the Flan-T5-small shape: d_model 512, 8+8 layers, 6 heads of 64, gated-GELU d_ff 1024,
vocabulary 32,128; float32), same weights (exported through our Hugging Face converter), same batch
(8 sequences, 256 input and 64 target tokens), same optimiser (AdamW, lr 1e-4, weight decay 0.01)
and dropout (0.1 in training on both sides; --dropout 0 turns it off). Before timing, the two
models' teacher-forced losses on the batch are compared, as a check that both sides run the same
network. Throughput is target tokens per second of the median step over --steps rounds after
--warmup steps (ours: after compilation); each round times one step of each side, so both see the
same load. Ours runs on the single device the trainer would use here (mesh (1, 1)).

  ./run.sh bench train_step            # or: .venv/bin/python bench/train_step.py --steps 5

Target: ratio >= 1.5. The last line of stdout is
{"tokens_per_s": ours, "reference_tokens_per_s": theirs, "ratio": ours / theirs}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BATCH, INPUT_LENGTH, TARGET_LENGTH = 8, 256, 64
LEARNING_RATE, WEIGHT_DECAY = 1e-4, 0.01


def make_batch(seed: int, vocab_size: int) -> dict[str, np.ndarray]:
  """Full-length rows as SeqIO's EncDecFeatureConverter produces them (unpacked, EOS last)."""
  rng = np.random.default_rng(seed)
  inputs = rng.integers(2, vocab_size, size=(BATCH, INPUT_LENGTH)).astype(np.int32)
  targets = rng.integers(2, vocab_size, size=(BATCH, TARGET_LENGTH)).astype(np.int32)
  inputs[:, -1] = targets[:, -1] = 1
  decoder_inputs = np.concatenate([np.zeros((BATCH, 1), np.int32), targets[:, :-1]], axis=1)
  return {"encoder_input_tokens": inputs, "decoder_input_tokens": decoder_inputs,
          "decoder_target_tokens": targets,
          "decoder_loss_weights": np.ones_like(targets)}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--dropout", type=float, default=0.1)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  import jax
  import torch
  import transformers

  from kard_jax.models import t5, t5_weights
  from kard_jax.training import models, optimizers, partitioning, trainer as trainer_lib

  config = t5.T5Config.flan_t5("small", dropout_rate=args.dropout)
  model = models.EncoderDecoderModel(t5.Transformer(config))
  batch = make_batch(args.seed, config.vocab_size)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  tx = optimizers.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY, decay_vectors=True)
  trainer = trainer_lib.Trainer(model, tx, LEARNING_RATE, partitioning.create_mesh((1, 1)),
                                partitioning.standard_logical_axis_rules(), spec)
  state = trainer.init_state(seed=args.seed)
  device_batch = trainer.global_batch(batch)
  print(f"jax {jax.devices()[0].platform}, torch threads {torch.get_num_threads()}; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)

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
  print(f"initial loss: ours {ours_loss:.5f}, transformers {hf_loss:.5f}")
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
  run_ours(args.warmup)
  compile_s = time.perf_counter() - start
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
  tokens = BATCH * TARGET_LENGTH
  ours_tps = tokens / statistics.median(ours_times)
  hf_tps = tokens / statistics.median(hf_times)

  print(f"ours          {ours_tps:8.1f} target tokens/s (median of {args.steps} steps; compile + "
        f"warm-up {compile_s:.1f} s; last loss {ours_last:.4f})")
  print(f"transformers  {hf_tps:8.1f} target tokens/s (median of {args.steps} steps; last loss "
        f"{hf_last:.4f})")
  print(f"ratio {ours_tps / hf_tps:.2f}x")
  print(json.dumps({"tokens_per_s": round(ours_tps, 2), "reference_tokens_per_s": round(hf_tps, 2),
                    "ratio": round(ours_tps / hf_tps, 3)}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
