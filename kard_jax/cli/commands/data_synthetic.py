"""`kard data synthetic`: write the synthetic knowledge benchmark in the prepared layout."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from kard_jax.data.synthetic import SyntheticConfig, write_benchmark

HELP = ("generate the synthetic knowledge benchmark (fictional entities, 2/3-hop questions, "
        "KB passages, oracle rationales) into --out")


_HELP = {
    "num_entities": "long-tail subjects (people and companies) questions are asked about",
    "company_share": "share of the subjects that are companies",
    "num_cities": "cities (head entities: the first hop's object)",
    "num_countries": "countries, one language each",
    "num_continents": "continents (>= --num_choices for 3-hop questions)",
    "distractor_difficulty": "0: unique names, random distractors; 1: namesakes everywhere, "
                             "distractors a careless reader would pick",
    "unseen_share": "share of subjects held out of training (their questions are eval-only)",
    "train_questions_per_entity": "training questions per training subject",
    "num_validation": "validation questions",
    "num_test": "test questions",
    "seen_share": "share of evaluation questions about training subjects",
    "rationales_per_question": "oracle rationale variants per training question",
    "num_choices": "answer choices per question",
    "seed": "random seed (same seed and flags: byte-identical files)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
  defaults = SyntheticConfig()
  parser.add_argument("--out", required=True,
                      help="benchmark directory to write (e.g. DATA/synthetic)")
  for field in dataclasses.fields(SyntheticConfig):
    default = getattr(defaults, field.name)
    if field.name == "hops":
      parser.add_argument("--hops", type=int, nargs="+", default=list(default),
                          help="hop counts of the questions "
                          f"(default: {' '.join(map(str, default))})")
      continue
    parser.add_argument(f"--{field.name}", type=type(default), default=default,
                        help=f"{_HELP.get(field.name, '')} (default: {default})")


def run(args: argparse.Namespace) -> int:
  values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticConfig)}
  values["hops"] = tuple(sorted(set(values["hops"])))
  try:
    config = SyntheticConfig(**values)
  except ValueError as e:  # a bad combination of flags: a usage error, like argparse's
    print(f"kard data synthetic: error: {e}", file=sys.stderr)
    return 2
  manifest = write_benchmark(config, args.out)
  counts = manifest["counts"]
  for split, wanted in (("validation", config.num_validation), ("test", config.num_test)):
    if counts[split] < wanted:
      print(f"note: only {counts[split]} of {wanted} {split} questions could be made; raise "
            "--num_entities or --unseen_share", file=sys.stderr)
  print(f"wrote the synthetic benchmark to {args.out}")
  print(json.dumps(manifest["counts"], sort_keys=True))
  return 0
