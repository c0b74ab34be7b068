"""Compile-only planning: does a model's real train step (and its decoder) fit an accelerator?

On any host with N (virtual) devices, `plan_config` builds the trainer's own train step
(`training.step.make_train_step`: loss, gradients, Adafactor update, shardings from the logical axis
rules) and the compiled greedy decoder (`decoding.adapters`) for the given shapes and mesh, lowers and
compiles both for abstract inputs (`jax.ShapeDtypeStruct`s from `jax.eval_shape`: no parameter is
ever allocated, nothing runs), and reads

  * per-device memory from XLA's memory analysis: arguments (parameters, optimizer state, batch),
    outputs, temporaries, and the peak = arguments + outputs - donated aliases + temporaries;
  * FLOPs per step (all devices) from XLA's cost analysis of the step (see `train_flops`);
  * a step-time estimate: FLOPs / (devices x published bf16 peak x MFU).

The memory is what XLA's *CPU* backend plans for the same sharded program: TPU and GPU compilers
fuse and lay out differently (usually needing less temporary memory), so it is an upper-bound style
check, not the accelerator's exact figure.

Devices: the process must see enough of them. On CPU set
`XLA_FLAGS=--xla_force_host_platform_device_count=N` before JAX is imported (`kard plan` does this
itself by re-running in a subprocess).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Mapping, Sequence

# Published dense bf16 peak per chip and HBM per chip (one JAX device per chip / GPU).
ACCELERATORS: dict[str, dict[str, Any]] = {
    "tpu_v4": dict(peak_tflops=275.0, hbm_bytes=32 * 1024 ** 3,
                   source="Google Cloud TPU v4 documentation (cloud.google.com/tpu/docs/v4): "
                          "275 bf16 TFLOP/s and 32 GiB HBM2 per chip"),
    "tpu_v5e": dict(peak_tflops=197.0, hbm_bytes=16 * 1024 ** 3,
                    source="Google Cloud TPU v5e documentation (cloud.google.com/tpu/docs/v5e): "
                           "197 bf16 TFLOP/s and 16 GiB HBM2 per chip"),
    "a100_80gb": dict(peak_tflops=312.0, hbm_bytes=80 * 10 ** 9,
                      source="NVIDIA A100 Tensor Core GPU datasheet: 312 bf16 TFLOP/s dense, "
                             "80 GB HBM2e (A100 80GB SXM)"),
    "h100_sxm": dict(peak_tflops=989.0, hbm_bytes=80 * 10 ** 9,
                     source="NVIDIA H100 Tensor Core GPU datasheet: 989 bf16 TFLOP/s dense "
                            "(1,979 with sparsity), 80 GB HBM3 (H100 SXM)"),
}

# Preset name -> (accelerator, devices JAX shows, meshes to try (data, model), in order).
PRESETS: dict[str, dict[str, Any]] = {
    "tpu_v4_8": dict(accelerator="tpu_v4", devices=4, meshes=[(4, 1), (2, 2), (1, 4)]),
    "tpu_v5e_8": dict(accelerator="tpu_v5e", devices=8, meshes=[(8, 1), (4, 2), (2, 4), (1, 8)]),
    "a100_80gb_x8": dict(accelerator="a100_80gb", devices=8, meshes=[(8, 1), (4, 2), (2, 4)]),
    "h100_x8": dict(accelerator="h100_sxm", devices=8, meshes=[(8, 1), (4, 2), (2, 4)]),
}

MODELS = ("t5_tiny", "t5_small", "t5_base", "t5_large", "t5_xl")
REMAT_ORDER = ("none", "dots_saveable", "full")  # cheapest recomputation first
DEFAULT_MFU = 0.4
_GIB = 1024 ** 3


def model_config(name: str, *, remat: str = "none", scan_layers: bool = True,
                 dtype: str = "bfloat16", vocab_size: int | None = None):
  """The T5Config a plan compiles: Flan-T5 sizes ("t5_base" ..) or the test-sized "t5_tiny"."""
  from kard_jax.models import t5
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
  common = dict(remat=remat, scan_layers=scan_layers, dtype=dtype, dropout_rate=0.1)
  if vocab_size is not None:
    common["vocab_size"] = vocab_size
  if name == "t5_tiny":  # matmul-dominated, so 6·N·tokens describes it; compiles in seconds
    return t5.T5Config(**{**dict(vocab_size=512, d_model=256, num_heads=4, head_dim=64,
                                 num_encoder_layers=2, num_decoder_layers=2, d_ff=512),
                          **common})
  return t5.T5Config.flan_t5(name[len("t5_"):], **common)


def matmul_params(cfg) -> tuple[int, int]:
  """(encoder, decoder) parameters that multiply every token of their stack: all but the
  embedding lookup, norms and position tables; the decoder's count includes the logits head."""
  d, inner, ff = cfg.d_model, cfg.num_heads * cfg.head_dim, cfg.d_ff
  attention = 4 * d * inner
  mlp = (3 if cfg.feed_forward == "gated-gelu" else 2) * d * ff
  encoder = cfg.num_encoder_layers * (attention + mlp)
  decoder = cfg.num_decoder_layers * (2 * attention + mlp) + d * cfg.vocab_size
  return encoder, decoder


def six_n_tokens(cfg, batch: int, inputs: int, targets: int) -> float:
  """Training FLOPs by the 6·N·tokens rule, N counted per stack (encoder params see the inputs,
  decoder params the targets); attention scores and the optimizer are not in it."""
  encoder, decoder = matmul_params(cfg)
  return 6.0 * batch * (encoder * inputs + decoder * targets)


def _abstract_batch(batch: int, inputs: int, targets: int) -> dict[str, Any]:
  """What the packed EncDecFeatureConverter feeds the train step."""
  import jax
  import jax.numpy as jnp
  spec = lambda length: jax.ShapeDtypeStruct((batch, length), jnp.int32)
  return {"encoder_input_tokens": spec(inputs), "encoder_segment_ids": spec(inputs),
          "encoder_positions": spec(inputs), "decoder_input_tokens": spec(targets),
          "decoder_target_tokens": spec(targets), "decoder_loss_weights": spec(targets),
          "decoder_segment_ids": spec(targets), "decoder_positions": spec(targets)}


def _memory(compiled) -> dict[str, float]:
  analysis = compiled.memory_analysis()
  fields = {"arguments": analysis.argument_size_in_bytes, "outputs": analysis.output_size_in_bytes,
            "temporaries": analysis.temp_size_in_bytes, "aliased": analysis.alias_size_in_bytes}
  gib = {k: round(v / _GIB, 3) for k, v in fields.items()}
  gib["peak"] = round((fields["arguments"] + fields["outputs"] - fields["aliased"]
                       + fields["temporaries"]) / _GIB, 3)
  return gib


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, Sequence):  # older JAX: one dict per program
    cost = cost[0]
  return float(cost.get("flops", 0.0))


def lower_train_step(cfg, mesh, batch: int, inputs: int, targets: int,
                     optimizer: str = "adafactor") -> tuple[Any, Any]:
  """(lowered train step, its StateSetup): the trainer's step for abstract state and batch."""
  import jax
  from kard_jax.models import t5
  from kard_jax.training import models, optimizers, partitioning, step as step_lib
  from kard_jax.training import train_state as state_lib

  model = models.EncoderDecoderModel(t5.Transformer(cfg), z_loss=1e-4)
  tx = {"adafactor": optimizers.adafactor, "adamw": optimizers.adamw}[optimizer](1e-3)
  rules = partitioning.standard_logical_axis_rules()
  abstract_batch = _abstract_batch(batch, inputs, targets)
  shapes = {k: v.shape for k, v in abstract_batch.items()}
  types = {k: v.dtype for k, v in abstract_batch.items()}
  setup = state_lib.setup_state(model, tx, mesh, rules, shapes, types)
  batch_shardings = {k: partitioning.data_sharding(mesh) for k in abstract_batch}
  train_step = step_lib.make_train_step(model, tx, 1e-3, mesh, rules)
  jitted = jax.jit(train_step, in_shardings=(setup.shardings, batch_shardings),
                   out_shardings=(setup.shardings, partitioning.replicated(mesh)),
                   donate_argnums=(0,))
  with jax.set_mesh(mesh):
    return jitted.lower(setup.abstract_state, abstract_batch), setup


def compile_train_step(cfg, mesh, batch: int, inputs: int, targets: int,
                       optimizer: str = "adafactor") -> dict[str, Any]:
  """Lowers and compiles the trainer's train step for abstract state and batch."""
  from kard_jax.training import train_state as state_lib

  start = time.perf_counter()
  lowered, setup = lower_train_step(cfg, mesh, batch, inputs, targets, optimizer)
  compiled = lowered.compile()
  return {"compiled": compiled, "compile_s": time.perf_counter() - start,
          "param_count": state_lib.param_count(setup.abstract_state.params),
          "param_shardings": setup.shardings.params, "abstract_params": setup.abstract_state.params}


def train_flops(cfg, mesh, batch: int, inputs: int, targets: int,
                optimizer: str = "adafactor") -> float:
  """FLOPs of one whole train step (all devices) from XLA's cost analysis.

  XLA counts a loop body once whatever its trip count, so the scanned program undercounts its
  layers. A step's FLOPs are linear in the layer counts (every layer of a stack costs the same), so
  the unrolled program is lowered (not compiled) with 1+1, 2+1 and 1+2 layers and the line is
  extended to the real depths: base + encoder_layers x e + decoder_layers x d.
  """
  def flops(encoder_layers, decoder_layers):
    small = dataclasses.replace(cfg, scan_layers=False, num_encoder_layers=encoder_layers,
                                num_decoder_layers=decoder_layers)
    lowered, _ = lower_train_step(small, mesh, batch, inputs, targets, optimizer)
    return _flops(lowered)

  one = flops(1, 1)
  per_encoder_layer = flops(2, 1) - one
  per_decoder_layer = flops(1, 2) - one
  return (one + (cfg.num_encoder_layers - 1) * per_encoder_layer
          + (cfg.num_decoder_layers - 1) * per_decoder_layer)


def compile_decoder(cfg, mesh, abstract_params, param_shardings, batch: int, inputs: int,
                    max_new_tokens: int) -> dict[str, Any]:
  """Lowers and compiles the greedy decoder (encoder, cross-attention projections, cached loop)."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P
  from kard_jax.decoding import adapters
  from kard_jax.models import t5
  from kard_jax.training import partitioning

  config = adapters.DecodeConfig(method="greedy", max_new_tokens=max_new_tokens)
  module = t5.Transformer(dataclasses.replace(cfg, dropout_rate=0.0, remat="none"))
  rules = partitioning.standard_logical_axis_rules()

  def fn(params, inputs, rng):  # what adapters.make_generate_fn compiles for a mesh
    with nn.logical_axis_rules(rules):
      return adapters.encoder_decoder_generate(module, params, inputs, rng, config)

  generate = jax.jit(fn, in_shardings=(param_shardings, NamedSharding(mesh, P("data")),
                                       NamedSharding(mesh, P())),
                     out_shardings=NamedSharding(mesh, P()))
  inputs_spec = jax.ShapeDtypeStruct((batch, inputs), jnp.int32)
  rng = jax.eval_shape(lambda: jax.random.PRNGKey(0))
  start = time.perf_counter()
  with jax.set_mesh(mesh):
    compiled = generate.lower(abstract_params, inputs_spec, rng).compile()
  return {"compiled": compiled, "compile_s": time.perf_counter() - start}


def plan_config(model: str, mesh_shape: Sequence[int], batch: int, inputs: int, targets: int,
                *, remat: str = "none", scan_layers: bool = True, dtype: str = "bfloat16",
                optimizer: str = "adafactor", decoder: bool = True,
                vocab_size: int | None = None) -> dict[str, Any]:
  """Compiles one (model, mesh, remat) configuration; figures per device (see module docstring)."""
  import jax
  from kard_jax.training import partitioning

  cfg = model_config(model, remat=remat, scan_layers=scan_layers, dtype=dtype,
                     vocab_size=vocab_size)
  devices = math.prod(mesh_shape)
  if len(jax.devices()) < devices:
    raise ValueError(f"mesh {tuple(mesh_shape)} needs {devices} devices; this process sees "
                     f"{len(jax.devices())} (set XLA_FLAGS=--xla_force_host_platform_device_count"
                     f"={devices} before importing JAX)")
  if batch % mesh_shape[0]:
    raise ValueError(f"batch {batch} is not divisible by the mesh's data axis ({mesh_shape[0]})")
  mesh = partitioning.create_mesh(tuple(mesh_shape), jax.devices()[:devices])
  train = compile_train_step(cfg, mesh, batch, inputs, targets, optimizer)
  flops = train_flops(cfg, mesh, batch, inputs, targets, optimizer)
  row = {
      "model": model, "mesh": list(mesh_shape), "devices": devices, "remat": remat,
      "scan_layers": scan_layers, "dtype": dtype, "optimizer": optimizer, "batch": batch,
      "inputs": inputs, "targets": targets, "param_count": train["param_count"],
      "train_memory_gib": _memory(train["compiled"]),
      "train_flops_per_step": flops,
      "six_n_tokens_flops": six_n_tokens(cfg, batch, inputs, targets),
      "train_compile_s": round(train["compile_s"], 1),
  }
  if decoder:
    dec = compile_decoder(cfg, mesh, train["abstract_params"], train["param_shardings"], batch,
                          inputs, targets)
    row["decode_memory_gib"] = _memory(dec["compiled"])
    row["decode_compile_s"] = round(dec["compile_s"], 1)
  return row


def assess(row: Mapping[str, Any], hbm_bytes: float, peak_tflops: float | None,
           mfu: float = DEFAULT_MFU) -> dict[str, Any]:
  """Whether a compiled configuration fits `hbm_bytes` per device, and its estimated step time."""
  need = max(row["train_memory_gib"]["peak"], row.get("decode_memory_gib", {}).get("peak", 0.0))
  hbm_gib = hbm_bytes / _GIB
  out = {"hbm_gib": round(hbm_gib, 2), "fits": bool(need <= hbm_gib), "peak_gib": need}
  if peak_tflops:
    out["mfu"] = mfu
    out["step_s"] = row["train_flops_per_step"] / (row["devices"] * peak_tflops * 1e12 * mfu)
  return out


def render(results: Mapping[str, Any]) -> str:
  """The README table of a preset sweep (results/plan_*.json): what fits each accelerator."""
  shapes = results["shapes"]
  mfu = results["mfu"]
  lines = [
      f"Global batch {shapes['batch']} x ({shapes['inputs']} input + {shapes['targets']} target "
      f"tokens), bfloat16 activations over float32 parameters, Adafactor, scanned layers; per "
      f"accelerator the first mesh (data x model) and remat policy that fit, data-parallel and no "
      f"remat tried first. Memory is per device; the step time is the compiled FLOPs at "
      f"{mfu:.0%} of the published bf16 peak.",
      "",
      "| model | accelerator | devices | HBM / device (GiB) | mesh | remat | train peak (GiB) | "
      "arguments (GiB) | decoder peak (GiB) | TFLOP / step | step (s) | "
      "6·N·tokens / compiled |",
      "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
  for entry in results["results"]:
    chosen = entry.get("chosen")
    accel = entry.get("accelerator") or "-"
    if not chosen:
      hbm = results["accelerators"][accel]["hbm_bytes"] / _GIB
      lines.append(f"| {entry['model']} | {entry['preset']} | {entry['devices']} | {hbm:.1f} | "
                   f"nothing tried fits | | | | | | | |")
      continue
    mem = chosen["train_memory_gib"]
    dec = chosen.get("decode_memory_gib", {}).get("peak")
    ratio = chosen["six_n_tokens_flops"] / chosen["train_flops_per_step"]
    lines.append(
        f"| {entry['model']} | {entry['preset']} | {chosen['devices']} | {chosen['hbm_gib']:.1f} | "
        f"{chosen['mesh'][0]} x {chosen['mesh'][1]} | {chosen['remat']} | {mem['peak']:.2f} | "
        f"{mem['arguments']:.2f} | {dec if dec is not None else '-'} | "
        f"{chosen['train_flops_per_step'] / 1e12:.1f} | {chosen.get('step_s', float('nan')):.3f} | "
        f"{ratio:.2f} |")
  tried = sum(len(e.get("tried", [])) for e in results["results"])
  lines += ["", f"{tried} configurations tried (all in the results file, with those that did not "
            f"fit). {results['memory_note']}.", "", "Peaks and memory per chip:"]
  used = sorted({e["accelerator"] for e in results["results"] if e.get("accelerator")})
  for accel in used:
    lines.append(f"- {accel}: {results['accelerators'][accel]['source']}")
  stamp = results.get("stamp", {})
  lines += ["", f"Compiled on {stamp.get('device', {}).get('cpu', {}).get('cpu_model', 'CPU')} "
            f"(virtual devices, nothing executed) in {stamp.get('wall_s', 0) / 60:.0f} min by: "
            f"`{stamp.get('command', '')}`"]
  return "\n".join(lines)
