"""The StrategyQA reranker result (results/reranker_strategyqa.json), measured end to end.

Prepares StrategyQA (train / validation / test: disjoint seeded slices, see kard_jax.data.splits),
builds the BM25 index, trains the KARD reranker on the train split's gpt-3.5 rationales and
evaluates it on the held-out `test` slice (the reranker never reads it; its development
questions come from the train split), then writes the evaluation with the commands, their wall
times and the provenance stamp (kard_jax.report.stamp).

    python bench/reranker_strategyqa.py [--run DIR] [--out results/reranker_strategyqa.json]
    python -m kard_jax.pipeline.readme        # re-render the README table from the JSON

About 14 minutes on a 2-core CPU (the reranker's training is most of it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = "../shared/data"
RATIONALES = f"{SHARED}/rationales/strategyqa_mentorkd_gpt-3.5-turbo-instruct_train.normalized.jsonl"
SPLIT = "test"


def steps() -> list[list[str]]:
  """The `kard` command lines, with $RUN for the run directory."""
  data, index = "$RUN/data/strategyqa", "$RUN/data/strategyqa/index"
  return [
      ["data", "prepare", "--benchmark", "strategyqa", "--source", f"{SHARED}/strategyqa",
       "--rationales", RATIONALES, "--out", "$RUN/data"],
      ["retrieval", "build", "--kb", f"{SHARED}/strategyqa/wiki_sentence_kb.jsonl", "--no_split",
       "--out", index],
      ["rerank", "train", "--data", data, "--index", index, "--model_dir", "$RUN/run",
       "--gin_file", "gin_configs/reranker/strategyqa.gin", "--quiet"],
      ["rerank", "evaluate", "--data", data, "--index", index, "--model_dir", "$RUN/run",
       "--split", SPLIT, "--golden", f"{SHARED}/strategyqa/golden_sentences_train.json",
       f"{SHARED}/strategyqa/golden_sentences_dev.json", "--ceiling_rationales", RATIONALES,
       "--out", "$RUN/eval.json", "--quiet"],
  ]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", default=None, help="an empty working directory (default: a new "
                      "temporary one)")
  parser.add_argument("--out", default=os.path.join(ROOT, "results", "reranker_strategyqa.json"))
  args = parser.parse_args(argv)
  os.chdir(ROOT)

  from kard_jax.pipeline import cli
  from kard_jax.report import stamp

  run = os.path.abspath(args.run or tempfile.mkdtemp(prefix="reranker_strategyqa_"))
  if os.path.isdir(run) and os.listdir(run):
    print(f"{run}: not empty (the wall times would include reused work)", file=sys.stderr)
    return 2
  commands = []
  with stamp.Measurement(packages=("jax", "jaxlib", "flax", "numpy", "bm25s")) as m:
    for step in steps():
      start = time.perf_counter()
      code = cli.main([a.replace("$RUN", run) for a in step])
      if code:
        print(f"kard {shlex.join(step)} exited with status {code}", file=sys.stderr)
        return code
      shown = " ".join(a if a.startswith("$RUN") else shlex.quote(a) for a in step)
      commands.append({"command": f"kard {shown}",
                       "wall_s": round(time.perf_counter() - start, 1)})
  with open(os.path.join(run, "eval.json"), encoding="utf-8") as f:
    result = json.load(f)
  s = m.stamp()
  cpu = s["device"]["cpu"]
  loads = s["load_avg_1m"]
  result.update({
      "benchmark": "strategyqa",
      "title": "StrategyQA: KARD reranker (MiniLM late interaction) vs BM25",
      "machine": f"{cpu['cpu_model']}, {cpu['logical_cores']} logical cores (1-minute load "
                 f"average {loads['before']} before, {loads['after']} after the run)",
      "commands": commands, "total_wall_s": m.wall_s,
      "note": ("$RUN is any empty directory (here a fresh one: no cached passage states, so the "
               "wall time includes encoding every knowledge-base sentence with MiniLM). "
               f"Held-out questions: the seeded `{SPLIT}` slice (229 questions, disjoint from "
               "the validation slice and from training); gold evidence: their golden sentences, "
               "matched to knowledge-base sentences by text."),
  })
  stamp.write_results(args.out, result, s)
  print(f"wrote {args.out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
