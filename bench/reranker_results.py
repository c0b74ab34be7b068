"""The reranker results (results/reranker_<benchmark>.json), measured end to end.

For the benchmark named, prepares the data, builds the BM25 index, trains the KARD reranker on
the train split's teacher rationales and evaluates it on held-out questions it never reads,
then writes the evaluation with the commands, their wall times and the provenance stamp
(kard_jax.report.stamp).

  strategyqa: the seeded `test` slice (229 questions, disjoint from the validation slice and from
              training; see kard_jax.data.splits), gold evidence from the golden sentences,
              the gpt-3.5 rationales. About 7-14 minutes on a 2-core CPU.
  synthetic:  the synthetic benchmark's defaults (300 long-tail entities, namesake distractors),
              its test split, gold evidence each question's chain of fact passages. About 5
              minutes on a 2-core CPU.

    python bench/reranker_results.py --benchmark strategyqa|synthetic [--run DIR] [--out FILE]
    python -m kard_jax.report.readme        # re-render the README tables from the JSON
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


def steps(benchmark: str) -> list[list[str]]:
  """The `kard` command lines, with $RUN for the run directory."""
  data, index = f"$RUN/data/{benchmark}", f"$RUN/data/{benchmark}/index"
  train = ["rerank", "train", "--data", data, "--index", index, "--model_dir", "$RUN/run",
           "--gin_file", f"gin_configs/reranker/{benchmark}.gin", "--quiet"]
  evaluate = ["rerank", "evaluate", "--data", data, "--index", index, "--model_dir", "$RUN/run",
              "--split", "test", "--out", "$RUN/eval.json", "--quiet"]
  if benchmark == "synthetic":
    return [["data", "synthetic", "--out", data],
            ["retrieval", "build", "--kb", f"{data}/kb/passages.jsonl", "--out", index],
            train, evaluate]
  return [
      ["data", "prepare", "--benchmark", "strategyqa", "--source", f"{SHARED}/strategyqa",
       "--rationales", RATIONALES, "--out", "$RUN/data"],
      ["retrieval", "build", "--kb", f"{SHARED}/strategyqa/wiki_sentence_kb.jsonl", "--no_split",
       "--out", index],
      train,
      evaluate + ["--golden", f"{SHARED}/strategyqa/golden_sentences_train.json",
                  f"{SHARED}/strategyqa/golden_sentences_dev.json", "--ceiling_rationales",
                  RATIONALES],
  ]


TITLES = {
    "strategyqa": "StrategyQA: KARD reranker (MiniLM late interaction) vs BM25",
    "synthetic": "Synthetic benchmark (name-sharing distractors): KARD reranker vs BM25",
}
NOTES = {
    "strategyqa": ("Held-out questions: the seeded `test` slice (229 questions, disjoint from the "
                   "validation slice and from training); gold evidence: their golden sentences, "
                   "matched to knowledge-base sentences by text."),
    "synthetic": ("The synthetic benchmark's defaults (300 long-tail entities, namesakes sharing "
                  "first or last names); held-out questions: its test split; gold evidence: each "
                  "question's chain of fact passages (subject, city[, country]). Only train "
                  "questions have teacher rationales, so the ceiling row is on the training "
                  "questions held out from the reranker's training."),
}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", default=None, help="an empty working directory (default: a new "
                      "temporary one)")
  parser.add_argument("--benchmark", choices=sorted(TITLES), required=True)
  parser.add_argument("--out", default=None,
                      help="default: results/reranker_<benchmark>.json")
  args = parser.parse_args(argv)
  out = args.out or os.path.join(ROOT, "results", f"reranker_{args.benchmark}.json")
  os.chdir(ROOT)

  from kard_jax.cli import main as cli
  from kard_jax.report import stamp

  run = os.path.abspath(args.run or tempfile.mkdtemp(prefix=f"reranker_{args.benchmark}_"))
  if os.path.isdir(run) and os.listdir(run):
    print(f"{run}: not empty (the wall times would include reused work)", file=sys.stderr)
    return 2
  commands = []
  with stamp.Measurement(packages=("jax", "jaxlib", "flax", "numpy", "bm25s")) as m:
    for step in steps(args.benchmark):
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
      "benchmark": args.benchmark,
      "title": TITLES[args.benchmark],
      "machine": f"{cpu['cpu_model']}, {cpu['logical_cores']} logical cores (1-minute load "
                 f"average {loads['before']} before, {loads['after']} after the run)",
      "commands": commands, "total_wall_s": m.wall_s,
      "note": ("$RUN is any empty directory (here a fresh one: no cached passage states, so the "
               "wall time includes encoding every knowledge-base passage with MiniLM). "
               + NOTES[args.benchmark]),
  })
  stamp.write_results(out, result, s)
  print(f"wrote {out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
