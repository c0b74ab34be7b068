"""`kard convert`: Hugging Face checkpoints to our parameter trees, and students back to Hugging Face.

  kard convert hf-to-flax --model t5 --hf_dir flan-t5-base --out ckpt/flan_t5_base
  kard convert flax-to-hf --model t5 --flax_dir ckpt/flan_t5_base --out hf/flan_t5_base

`hf-to-flax` reads config.json + *.safetensors and writes an Orbax parameter checkpoint with
model_config.json beside it (see kard_jax.models.params_io); `flax-to-hf` reads one back (from a
conversion or from training) and writes a folder `transformers` loads (`T5ForConditionalGeneration`,
`GPT2LMHeadModel`). The BERT backbone is only ever read.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from kard_jax.data.errors import InputError

HELP = ("Convert Hugging Face safetensors checkpoints to Orbax parameter trees (`hf-to-flax`: t5, "
        "gpt2, bert) and trained students back to Hugging Face folders (`flax-to-hf`: t5, gpt2).")

# --model -> (weights module, family written in model_config.json, config class "module:Name")
MODELS = {
    "t5": ("kard_jax.models.t5_weights", "t5", "kard_jax.models.t5:T5Config"),
    "gpt2": ("kard_jax.models.gpt_weights", "gpt", "kard_jax.models.gpt:GPTConfig"),
    "bert": ("kard_jax.models.bert_weights", "bert", "kard_jax.models.bert:BertConfig"),
}
EXPORTABLE = ("t5", "gpt2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  sub = parser.add_subparsers(dest="convert_command", metavar="SUBCOMMAND", required=True)
  p = sub.add_parser("hf-to-flax", help="Hugging Face folder -> Orbax parameter checkpoint")
  p.add_argument("--model", required=True, choices=sorted(MODELS))
  p.add_argument("--hf_dir", required=True, help="folder with config.json and *.safetensors")
  p.add_argument("--out", required=True, help="Orbax checkpoint directory to write (replaced)")
  p.add_argument("--param_dtype", default="float32", choices=["float32", "bfloat16"],
                 help="storage dtype of the written parameters")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                 help="activation dtype recorded in model_config.json")
  p.add_argument("--scan_layers", action="store_true",
                 help="t5 only: write the scanned layout (each stack's layers stacked under "
                 "`layers`), for a model trained with T5Config.scan_layers=True")
  p = sub.add_parser("flax-to-hf", help="Orbax parameter checkpoint -> Hugging Face folder")
  p.add_argument("--model", required=True, choices=sorted(EXPORTABLE))
  p.add_argument("--flax_dir", required=True,
                 help="an Orbax parameter checkpoint: the output of hf-to-flax, or a training "
                 "run's MODEL_DIR/checkpoint_<step>/params")
  p.add_argument("--model_config", default=None,
                 help="the model_config.json describing it (default: the first found in "
                 "--flax_dir or the two directories above it, which covers both cases)")
  p.add_argument("--out", required=True, help="folder to write config.json + model.safetensors")


def _weights_module(model: str):
  name = MODELS[model][0]
  try:
    return importlib.import_module(name)
  except ModuleNotFoundError as e:
    if e.name == name:
      raise SystemExit(f"kard convert: --model {model} is not available in this version") from None
    raise


def _config_class(model: str):
  module, name = MODELS[model][2].split(":")
  return getattr(importlib.import_module(module), name)


def hf_to_flax(model: str, hf_dir: str, out: str, *, dtype: str = "float32",
               param_dtype: str = "float32", scan_layers: bool = False) -> None:
  import jax.numpy as jnp

  from kard_jax.models import params_io

  extra = {"scan_layers": True} if scan_layers else {}
  config, params = _weights_module(model).load_hf(hf_dir, dtype=jnp.dtype(dtype),
                                                  param_dtype=jnp.dtype(param_dtype), **extra)
  params_io.save(out, params, family=MODELS[model][1], config=config)


def _read_description(path: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise InputError(path, "file not found (the model description written with the "
                     "parameters; pass --model_config)") from None
  except json.JSONDecodeError as e:
    raise InputError(path, f"invalid JSON ({e.msg})", e.lineno) from None


def _find_description(flax_dir: str) -> str:
  from kard_jax.models import params_io

  folder = os.path.abspath(flax_dir)
  candidates = [folder, os.path.dirname(folder), os.path.dirname(os.path.dirname(folder))]
  for candidate in candidates:
    path = os.path.join(candidate, params_io.MODEL_CONFIG)
    if os.path.exists(path):
      return path
  return os.path.join(folder, params_io.MODEL_CONFIG)  # reported as missing


def flax_to_hf(model: str, flax_dir: str, out: str, model_config: str | None = None) -> None:
  from kard_jax.models import params_io

  description_path = model_config or _find_description(flax_dir)
  description = _read_description(description_path)
  family = MODELS[model][1]
  if description.get("family") != family:
    raise InputError(description_path, f"describes a {description.get('family')!r} model, "
                     f"not {family!r} (--model {model})")
  try:
    config = _config_class(model)(**description["config"])
  except (KeyError, TypeError, ValueError) as e:
    raise InputError(description_path, f"not a valid {model} config ({e})") from None
  params = params_io.restore(flax_dir)
  _weights_module(model).export_hf(config, params, out)


def run(args: argparse.Namespace) -> int:
  if args.convert_command == "hf-to-flax":
    if args.scan_layers and args.model != "t5":
      print(f"kard convert: error: --scan_layers applies to --model t5, not {args.model}",
            file=sys.stderr)
      return 2
    hf_to_flax(args.model, args.hf_dir, args.out, dtype=args.dtype, param_dtype=args.param_dtype,
               scan_layers=args.scan_layers)
  else:
    flax_to_hf(args.model, args.flax_dir, args.out, args.model_config)
  print(f"wrote {args.out}", file=sys.stderr)
  return 0
