"""`kard plan`: compile (never run) the real train step and decoder for a mesh; does it fit?

  kard plan --model t5_xl --mesh 2,2 --batch 32 --inputs 512 --targets 256 --devices 4 --hbm_gb 32
  kard plan --preset tpu_v4_8 --model t5_xl --batch 32 --inputs 512 --targets 256
  kard plan --preset all --model t5_base,t5_large,t5_xl --batch 32 --inputs 512 --targets 256 \
      --name flan_t5

With --mesh, one configuration is compiled (remat from --remat). With --preset, each preset's
meshes (data-parallel first) and remat policies (none, dots_saveable, full) are tried in order and
the first that fits the preset's memory is kept; a configuration whose parameters and optimizer
state alone exceed it is skipped without compiling. Everything compiled is reported. On a CPU host
the devices are virtual (XLA_FLAGS=--xla_force_host_platform_device_count=N, set here by re-running
this command in a child process when JAX is already up with fewer devices).

Writes results/plan_<name>.json (stamped) and prints a table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from kard_jax.training import plan as plan_lib

HELP = ("Lower and compile the real train step and greedy decoder of a T5 student for a device mesh "
        "(compile only, on virtual CPU devices), report per-device memory, FLOPs per step, whether "
        "it fits the accelerator and an estimated step time; presets for TPU v4-8, v5e-8, 8x A100 "
        "80GB and 8x H100.")

_CHILD_ENV = "KARD_PLAN_CHILD"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--model", default="t5_base",
                      help=f"comma-separated models: {', '.join(plan_lib.MODELS)}")
  parser.add_argument("--preset", default=None,
                      help=f"comma-separated presets, or 'all': {', '.join(plan_lib.PRESETS)}")
  parser.add_argument("--mesh", default=None, help="data,model sizes, e.g. 2,2 (instead of a preset)")
  parser.add_argument("--devices", type=int, default=None,
                      help="devices the mesh runs on (default: the mesh's size)")
  parser.add_argument("--hbm_gb", type=float, default=None,
                      help="memory per device in GB (10^9 bytes) for --mesh runs")
  parser.add_argument("--peak_tflops", type=float, default=None,
                      help="bf16 peak TFLOP/s per device for --mesh runs' step-time estimate")
  parser.add_argument("--mfu", type=float, default=plan_lib.DEFAULT_MFU,
                      help="model FLOPs utilisation assumed by the step-time estimate")
  parser.add_argument("--batch", type=int, default=32, help="global batch (rows)")
  parser.add_argument("--inputs", type=int, default=512, help="encoder length")
  parser.add_argument("--targets", type=int, default=256,
                      help="decoder length (also the decoder's max new tokens)")
  parser.add_argument("--remat", default="none", choices=plan_lib.REMAT_ORDER,
                      help="remat policy for --mesh runs (presets try all)")
  parser.add_argument("--no_scan", action="store_true",
                      help="unrolled layers instead of nn.scan (much slower to compile)")
  parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                      help="activation dtype (parameters and optimizer state stay float32)")
  parser.add_argument("--optimizer", default="adafactor", choices=["adafactor", "adamw"])
  parser.add_argument("--no_decoder", action="store_true", help="compile the train step only")
  parser.add_argument("--vocab_size", type=int, default=None,
                      help="override the model's vocabulary (default: Flan-T5's 32,128)")
  parser.add_argument("--name", default=None, help="results/plan_<name>.json (default: from flags)")
  parser.add_argument("--out_dir", default="results", help="directory for the results file")


def _fail(message: str) -> int:
  print(f"kard plan: error: {message}", file=sys.stderr)
  return 2


def _validate(args) -> tuple[list[str], list[str], tuple[int, int] | None, str | None]:
  """(models, presets, mesh, error); error is a one-line message for a bad flag."""
  models = [m.strip() for m in args.model.split(",") if m.strip()]
  bad = [m for m in models if m not in plan_lib.MODELS]
  if not models or bad:
    return [], [], None, f"--model {args.model!r}: choose from {', '.join(plan_lib.MODELS)}"
  presets: list[str] = []
  if args.preset:
    presets = (list(plan_lib.PRESETS) if args.preset == "all"
               else [p.strip() for p in args.preset.split(",") if p.strip()])
    bad = [p for p in presets if p not in plan_lib.PRESETS]
    if bad:
      return [], [], None, (f"--preset {args.preset!r}: choose from 'all' or "
                            f"{', '.join(plan_lib.PRESETS)}")
  mesh = None
  if args.mesh is not None:
    try:
      mesh = tuple(int(s) for s in args.mesh.split(","))
    except ValueError:
      mesh = ()
    if len(mesh) != 2 or min(mesh) < 1:
      return [], [], None, f"--mesh {args.mesh!r}: expected two positive sizes, e.g. 2,2"
  if (mesh is None) == (not presets):
    return [], [], None, "give exactly one of --mesh or --preset"
  if mesh is not None:
    devices = args.devices if args.devices is not None else mesh[0] * mesh[1]
    if devices != mesh[0] * mesh[1]:
      return [], [], None, f"--mesh {args.mesh} has {mesh[0] * mesh[1]} devices, --devices {devices}"
    if args.hbm_gb is None or args.hbm_gb <= 0:
      return [], [], None, "--mesh runs need --hbm_gb > 0 (memory per device)"
  for name in ("batch", "inputs", "targets"):
    if getattr(args, name) < 1:
      return [], [], None, f"--{name} must be >= 1, got {getattr(args, name)}"
  if not 0 < args.mfu <= 1:
    return [], [], None, f"--mfu must be in (0, 1], got {args.mfu}"
  if args.peak_tflops is not None and args.peak_tflops <= 0:
    return [], [], None, f"--peak_tflops must be > 0, got {args.peak_tflops}"
  return models, presets, mesh, None


def _devices_needed(presets, mesh) -> int:
  if mesh is not None:
    return mesh[0] * mesh[1]
  return max(plan_lib.PRESETS[p]["devices"] for p in presets)


def _ensure_devices(needed: int, argv: list[str]) -> int | None:
  """Makes JAX see `needed` CPU devices: sets XLA_FLAGS if JAX is not up yet, else re-runs this
  command in a child process with it set. Returns the child's exit code, or None to go on here."""
  if "jax" not in sys.modules:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={needed}"])
    return None
  import jax
  if len(jax.devices()) >= needed or os.environ.get(_CHILD_ENV):
    return None
  env = dict(os.environ, **{_CHILD_ENV: "1"})
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={needed}"
  return subprocess.run([sys.executable, "-m", "kard_jax.cli.main", "plan", *argv],
                        env=env, check=False).returncode


def _arguments_gib(model: str, mesh, args) -> float:
  """Per-device bytes of parameters and optimizer state alone (no compile), in GiB."""
  import jax
  import numpy as np
  from kard_jax.models import t5
  from kard_jax.training import models, optimizers, partitioning
  from kard_jax.training import train_state as state_lib

  cfg = plan_lib.model_config(model, scan_layers=not args.no_scan, dtype=args.dtype,
                              vocab_size=args.vocab_size)
  tx = {"adafactor": optimizers.adafactor, "adamw": optimizers.adamw}[args.optimizer](1e-3)
  jmesh = partitioning.create_mesh(mesh, jax.devices()[:mesh[0] * mesh[1]])
  setup = state_lib.setup_state(models.EncoderDecoderModel(t5.Transformer(cfg)), tx, jmesh,
                                partitioning.standard_logical_axis_rules(),
                                {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)})
  total = 0
  for leaf, sharding in zip(jax.tree.leaves(setup.abstract_state),
                            jax.tree.leaves(setup.shardings,
                                            is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))):
    total += int(np.prod(sharding.shard_shape(leaf.shape))) * leaf.dtype.itemsize
  return total / 1024 ** 3


def _row_line(row, verdict) -> str:
  mem = row["train_memory_gib"]
  dec = row.get("decode_memory_gib", {}).get("peak")
  step = f"{verdict['step_s']:.3f} s" if "step_s" in verdict else "-"
  return (f"{row['model']:9} mesh {row['mesh'][0]}x{row['mesh'][1]} remat {row['remat']:13} "
          f"args {mem['arguments']:7.2f} temp {mem['temporaries']:7.2f} peak {mem['peak']:7.2f} GiB"
          f"  decode {dec if dec is not None else '-':>7} GiB  "
          f"{row['train_flops_per_step'] / 1e12:9.1f} TFLOP/step  step {step}  "
          f"{'fits' if verdict['fits'] else 'does not fit'} {verdict['hbm_gib']} GiB")


def run(args: argparse.Namespace) -> int:
  models, presets, mesh, error = _validate(args)
  if error:
    return _fail(error)
  argv = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "plan" else getattr(args, "argv", [])
  child = _ensure_devices(_devices_needed(presets, mesh), list(argv))
  if child is not None:
    return child

  from kard_jax.report import stamp as stamp_lib
  name = args.name or (f"{'_'.join(models)}_{args.mesh.replace(',', 'x')}" if mesh
                       else f"{'_'.join(models)}_{'_'.join(presets)}")
  shapes = dict(batch=args.batch, inputs=args.inputs, targets=args.targets)
  options = dict(scan_layers=not args.no_scan, dtype=args.dtype, optimizer=args.optimizer,
                 vocab_size=args.vocab_size)
  compiled: dict[tuple, dict] = {}

  def compile_row(model, m, remat, decoder):
    key = (model, tuple(m), remat)
    row = compiled.get(key)
    if row is None or (decoder and "decode_memory_gib" not in row):
      print(f"compiling {model} mesh {m[0]}x{m[1]} remat {remat}"
            f"{' (+ decoder)' if decoder else ''} ...", file=sys.stderr, flush=True)
      row = plan_lib.plan_config(model, m, remat=remat, decoder=decoder, **shapes, **options)
      compiled[key] = row
    return row

  results = []
  with stamp_lib.Measurement(packages=("jax", "jaxlib", "flax", "optax")) as measurement:
    try:
      if mesh is not None:
        for model in models:
          row = compile_row(model, mesh, args.remat, not args.no_decoder)
          verdict = plan_lib.assess(row, args.hbm_gb * 1e9, args.peak_tflops, args.mfu)
          results.append({"preset": None, "chosen": True, **row, **verdict})
          print(_row_line(row, verdict))
      else:
        for model in models:
          for preset in presets:
            spec = plan_lib.PRESETS[preset]
            accel = plan_lib.ACCELERATORS[spec["accelerator"]]
            tried, chosen = [], None
            for m in spec["meshes"]:
              if args.batch % m[0]:
                continue
              static = _arguments_gib(model, m, args)
              if static > accel["hbm_bytes"] / 1024 ** 3:
                tried.append({"mesh": list(m), "skipped": f"parameters + optimizer state "
                              f"{static:.2f} GiB per device exceed the memory"})
                continue
              for remat in plan_lib.REMAT_ORDER:
                row = compile_row(model, m, remat, decoder=False)
                verdict = plan_lib.assess(row, accel["hbm_bytes"], accel["peak_tflops"], args.mfu)
                if verdict["fits"] and not args.no_decoder:
                  row = compile_row(model, m, remat, decoder=True)
                  verdict = plan_lib.assess(row, accel["hbm_bytes"], accel["peak_tflops"],
                                            args.mfu)
                tried.append({**row, **verdict})
                print(f"[{preset}] " + _row_line(row, verdict))
                if verdict["fits"]:
                  chosen = tried[-1]
                  break
              if chosen:
                break
            results.append({"preset": preset, "accelerator": spec["accelerator"],
                            "devices": spec["devices"], "model": model,
                            "chosen": chosen, "tried": tried})
    except ValueError as e:
      return _fail(str(e))

  payload = {
      "name": name, "shapes": shapes, "options": options, "mfu": args.mfu,
      "accelerators": plan_lib.ACCELERATORS if presets else None,
      "memory_note": ("per-device memory from XLA's memory analysis of the CPU-compiled, sharded "
                      "program; TPU/GPU compilers plan temporaries differently"),
      "results": results,
  }
  out = os.path.join(args.out_dir, f"plan_{name}.json")
  os.makedirs(args.out_dir, exist_ok=True)
  stamp_lib.write_results(out, payload, measurement.stamp())
  print(f"wrote {out}")
  return 0
