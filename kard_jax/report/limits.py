"""This machine's physical limits, measured in the benchmark's own process, and published peaks.

A benchmark reports its speed twice: against a peer library (a ratio) and against what the
hardware allows. The limits are measured with JAX on the device JAX picks (CPU, GPU or TPU), in the
same process and under the same thread pinning as the benchmark itself:

  - streaming bandwidth: bytes/s of a compiled `jnp.sum` over a large float32 array (best of a few
    calls), the rate at which a step can read its weights and cache;
  - matmul throughput: FLOP/s of a compiled float32 `jnp.dot` of two square matrices.

On an accelerator the published peak of its `device_kind` (table below) gives the usual MFU too.
Model FLOP counts (`t5_forward_flops`, `bert_forward_flops`) are the matmul FLOPs of the network
(2 per multiply-add), the convention MFU uses; elementwise work is not counted.
"""

from __future__ import annotations

import time
from typing import Any, Callable

# Published dense peaks by `device_kind` substring (first match wins): FLOP/s for float32 without
# tensor cores, and for bfloat16 (the headline figure); memory bandwidth in bytes/s.
PUBLISHED_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"fp32": 51.2e12, "bf16": 756e12, "bandwidth": 2.0e12}),
    ("H100", {"fp32": 66.9e12, "bf16": 989e12, "bandwidth": 3.35e12}),
    ("H200", {"fp32": 66.9e12, "bf16": 989e12, "bandwidth": 4.8e12}),
    ("A100", {"fp32": 19.5e12, "bf16": 312e12, "bandwidth": 2.0e12}),
    ("L4", {"fp32": 30.3e12, "bf16": 121e12, "bandwidth": 0.3e12}),
    ("V100", {"fp32": 15.7e12, "bf16": 125e12, "bandwidth": 0.9e12}),
    ("TPU v6", {"bf16": 918e12, "bandwidth": 1.64e12}),
    ("TPU v5 lite", {"bf16": 197e12, "bandwidth": 0.819e12}),
    ("TPU v5e", {"bf16": 197e12, "bandwidth": 0.819e12}),
    ("TPU v5", {"bf16": 459e12, "bandwidth": 2.765e12}),
    ("TPU v4", {"bf16": 275e12, "bandwidth": 1.2e12}),
)


def published_peak(device_kind: str) -> dict[str, float] | None:
  """The published peaks of a JAX `device_kind` (e.g. 'NVIDIA H100 80GB HBM3'), None if unknown."""
  for name, peaks in PUBLISHED_PEAKS:
    if name.lower() in device_kind.lower():
      return dict(peaks)
  return None


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
  import jax

  jax.block_until_ready(fn())  # compile and warm up
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - start)
  return best


def default_sizes(platform: str) -> tuple[int, int]:
  """(bandwidth array bytes, matmul side) large enough to reach steady state on `platform`."""
  if platform == "cpu":
    return 256 * 2**20, 2048
  return 2 * 2**30, 8192


def measure(bandwidth_bytes: int | None = None, matmul_n: int | None = None,
            repeats: int = 5) -> dict[str, Any]:
  """Measures streaming bandwidth and float32 matmul throughput on JAX's default device."""
  import jax
  import jax.numpy as jnp

  device = jax.devices()[0]
  default_bytes, default_n = default_sizes(device.platform)
  nbytes = bandwidth_bytes or default_bytes
  n = matmul_n or default_n

  x = jnp.ones((nbytes // 4,), jnp.float32)
  total = jax.jit(jnp.sum)
  bandwidth = x.nbytes / _best_seconds(lambda: total(x), repeats)
  del x
  a = jnp.ones((n, n), jnp.float32)
  b = jnp.full((n, n), 0.5, jnp.float32)
  dot = jax.jit(jnp.dot)
  matmul = 2 * n**3 / _best_seconds(lambda: dot(a, b), repeats)
  out = {"platform": device.platform, "device_kind": device.device_kind,
         "bandwidth_bytes_per_s": bandwidth, "bandwidth_array_bytes": int(nbytes),
         "matmul_flops_per_s": matmul, "matmul_n": n,
         "how": (f"best of {repeats}: jit(jnp.sum) over {nbytes / 2**20:.0f} MiB of float32; "
                 f"jit(jnp.dot) of two {n}x{n} float32 matrices")}
  peak = published_peak(device.device_kind) if device.platform != "cpu" else None
  if peak:
    out["published_peak"] = peak
  return out


def mfu(flops_per_s: float, limits: dict[str, Any]) -> dict[str, float]:
  """Achieved FLOP/s as fractions of the measured matmul rate and of any published peaks."""
  out = {"fraction_of_measured_matmul": flops_per_s / limits["matmul_flops_per_s"]}
  for dtype, peak in (limits.get("published_peak") or {}).items():
    if dtype != "bandwidth":
      out[f"mfu_vs_published_{dtype}_peak"] = flops_per_s / peak
  return out


def bandwidth_fraction(bytes_per_s: float, limits: dict[str, Any]) -> dict[str, float]:
  """Achieved read rate as fractions of the measured and any published bandwidth."""
  out = {"fraction_of_measured_bandwidth": bytes_per_s / limits["bandwidth_bytes_per_s"]}
  peak = (limits.get("published_peak") or {}).get("bandwidth")
  if peak:
    out["fraction_of_published_bandwidth"] = bytes_per_s / peak
  return out


def tree_bytes(tree: Any, keep: Callable[[tuple[str, ...]], bool] = lambda path: True) -> int:
  """Bytes of the arrays of a nested dict whose key path passes `keep`."""
  from flax import traverse_util

  return int(sum(v.size * v.dtype.itemsize
                 for path, v in traverse_util.flatten_dict(dict(tree)).items() if keep(path)))


def _attention_flops(q_len: int, kv_len: int, inner: int) -> int:
  return 2 * 2 * q_len * kv_len * inner  # scores and the weighted sum


def t5_forward_flops(config: Any, batch: int, input_length: int, target_length: int) -> int:
  """Matmul FLOPs of one teacher-forced T5 forward pass (encoder, decoder, logits)."""
  d, inner, ff = config.d_model, config.num_heads * config.head_dim, config.d_ff
  ff_mats = 3 if config.feed_forward == "gated-gelu" else 2
  mlp = 2 * ff_mats * d * ff
  enc = config.num_encoder_layers * (input_length * (2 * 4 * d * inner + mlp)
                                     + _attention_flops(input_length, input_length, inner))
  dec = config.num_decoder_layers * (
      target_length * (2 * 4 * d * inner + 2 * 2 * d * inner + mlp)  # self q,k,v,o; cross q,o
      + input_length * 2 * 2 * d * inner  # cross-attention keys and values of the encoder output
      + _attention_flops(target_length, target_length, inner)
      + _attention_flops(target_length, input_length, inner))
  logits = 2 * target_length * d * config.vocab_size
  return batch * (enc + dec + logits)


def bert_forward_flops(num_layers: int, hidden: int, intermediate: int, length: int,
                       sequences: int) -> int:
  """Matmul FLOPs of a BERT encoder over `sequences` rows of `length` tokens."""
  per_layer = length * (2 * 4 * hidden * hidden + 2 * 2 * hidden * intermediate) \
      + _attention_flops(length, length, hidden)
  return sequences * num_layers * per_layer
