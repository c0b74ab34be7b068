"""Sci-CoT stage 1 decoded by `t5x.infer` -> DATA/<benchmark>/rationales/scicot_<split>.jsonl.

Sci-CoT's stage 2 (`kard_<benchmark>_scicot_answer`) reads stage 1's generated rationale for each
validation and test question from `rationales/scicot_<split>.jsonl` (train-eval reads validation,
t5x.eval / t5x.infer read test). `kard pipeline` writes those files itself; a T5X user decodes
stage 1 with t5x.infer on `kard_<benchmark>_scicot_rationale` and converts its output with

    python -m kard_jax.interop.t5x_rationales --data_dir DATA/<benchmark> --split validation \
      --infer_file INFER_OUTPUT_DIR/kard_<benchmark>_scicot_rationale-predict.jsonl-00000-of-00001

T5X writes one line per example of the split, in the task's order (the examples file's), as
{"inputs": {"inputs_pretokenized": ..., ...}, "prediction": ...}; an "id" among the inputs (from
`write_inferences_to_file.input_fields_to_include`) is used when present. Each line's input text
must be the stage-1 prompt of its example, so a file decoded from another split, task or data
directory is refused instead of pairing rationales with the wrong questions.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from kard_jax.data import jsonl, prompts
from kard_jax.data.answers import parse_answer
from kard_jax.data.errors import InputError
from kard_jax.data.example import read_examples
from kard_jax.data.rationale import Rationale, write_rationales

STAGE1_METHOD = "scicot_rationale"


def output_path(data_dir, split: str) -> str:
  return os.path.join(os.fspath(data_dir), "rationales", f"scicot_{split}.jsonl")


def convert(infer_file, data_dir, split: str) -> list[Rationale]:
  """Stage 1's predictions in `infer_file`, as one Rationale (sample 0) per example of `split`."""
  examples = read_examples(os.path.join(os.fspath(data_dir), "examples", f"{split}.jsonl"))
  by_id = {ex.id: ex for ex in examples}
  lines = list(jsonl.iter_jsonl(infer_file))
  if len(lines) != len(examples):
    raise InputError(infer_file, f"{len(lines)} predictions for the {len(examples)} examples of "
                     f"split {split!r}; decode the whole split with t5x.infer "
                     f"(--gin.utils.DatasetConfig.split=\"'{split}'\")")
  out = []
  for index, (lineno, obj) in enumerate(lines):
    inputs = obj.get("inputs")
    if not isinstance(inputs, dict) or not isinstance(obj.get("prediction"), str):
      raise InputError(infer_file, "expected t5x.infer's {\"inputs\": {...}, \"prediction\": "
                       "TEXT} (mode 'predict')", lineno)
    if "id" in inputs:
      if str(inputs["id"]) not in by_id:
        raise InputError(infer_file, f"example id {inputs['id']!r} is not in split {split!r}",
                         lineno)
      example = by_id[str(inputs["id"])]
    else:
      example = examples[index]
    expected = prompts.render_inputs(STAGE1_METHOD, example)
    if inputs.get("inputs_pretokenized") != expected:
      raise InputError(infer_file, f"the input is not the Sci-CoT stage-1 prompt of example "
                       f"{example.id!r} (line {index + 1} of {split}.jsonl): decode "
                       f"kard_<benchmark>_scicot_rationale on split {split!r} of this data "
                       "directory", lineno)
    text = obj["prediction"]
    if not text.strip():
      raise InputError(infer_file, f"empty prediction for example {example.id!r}", lineno)
    out.append(Rationale(example.id, 0, text, parse_answer(text, example.choices),
                         "scicot-stage1", {"decoding": "t5x.infer"}))
  return out


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m kard_jax.interop.t5x_rationales",
      description="write DATA/<benchmark>/rationales/scicot_<split>.jsonl from t5x.infer's "
                  "predictions of kard_<benchmark>_scicot_rationale")
  parser.add_argument("--infer_file", required=True,
                      help="t5x.infer's merged output: INFER_OUTPUT_DIR/<task>-predict.jsonl-*")
  parser.add_argument("--data_dir", required=True,
                      help="the benchmark's prepared directory (DATA/<benchmark>)")
  parser.add_argument("--split", required=True, choices=("validation", "test"))
  args = parser.parse_args(argv)
  try:
    rationales = convert(args.infer_file, args.data_dir, args.split)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  path = output_path(args.data_dir, args.split)
  write_rationales(path, rationales)
  print(f"wrote {len(rationales)} rationales to {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
