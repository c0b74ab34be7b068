r"""`kard teach`: DATA/<benchmark>/rationales/train.jsonl from a teacher (`teacher.collect`).

  # Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, a proxy); resumable at any point.
  OPENAI_API_KEY=... kard teach --data_dir data/strategyqa --base_url https://api.openai.com/v1 \
      --model gpt-4o-mini --n 10 --temperature 0.7 --max_per_example 3 --rpm 500 --tpm 200000
  kard teach --data_dir data/obqa --base_url http://localhost:8000/v1 --model Qwen2.5-7B-Instruct \
      --mode completions --samples_per_request 1 --max_in_flight 32
  # The synthetic benchmark's oracle teacher, and rationale files made elsewhere.
  kard teach --data_dir data/synthetic --offline
  kard teach --data_dir data/strategyqa --import_file theirs.jsonl --id_field qid \
      --answer_field pred

The last stdout line is a JSON summary: calls, retries, failures, tokens, kept and filtered
rationales. Exit status 1 when some samples could not be collected: after temporary failures
(rerun to retry only those), or when permanent errors (refused connection, HTTP 401/404, an HTML
page) stopped the run; its one-line cause names the URL, the status and the body. Bad flag values
exit 2 before anything runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from kard_jax.cli import flags

HELP = ("Collect chain-of-thought rationales for a benchmark's training questions from an "
        "OpenAI-compatible endpoint (resumable: every finished call is journaled), from the "
        "synthetic benchmark's oracle (--offline), or from a file (--import_file); filter them "
        "by answer (and an optional verifier) and write rationales/train.jsonl.")


def _bool_flag(parser, name: str, default: bool, help_text: str) -> None:
  """--NAME / --no_NAME (underscores, like every other flag here)."""
  group = parser.add_mutually_exclusive_group()
  group.add_argument(f"--{name}", dest=name, action="store_true", help=help_text)
  group.add_argument(f"--no_{name}", dest=name, action="store_false", help=argparse.SUPPRESS)
  parser.set_defaults(**{name: default})


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.formatter_class = argparse.RawDescriptionHelpFormatter
  parser.epilog = __doc__.split("\n", 2)[2]
  g = parser.add_argument_group("data")
  g.add_argument("--data_dir", required=True,
                 help="a prepared benchmark directory DATA/<benchmark>")
  g.add_argument("--benchmark", default=None,
                 help="benchmark name for the built-in exemplars (default: the data_dir's name)")
  g.add_argument("--split", default="train", help="examples split to teach (default train)")
  g.add_argument("--limit", type=flags.positive_int, default=None,
                 help="only the first N examples")
  g.add_argument("--out", default=None, help="rationale file (default DATA_DIR/rationales/"
                 "SPLIT.jsonl); written atomically")

  g = parser.add_argument_group("source (default: an endpoint)")
  src = g.add_mutually_exclusive_group()
  src.add_argument("--offline", action="store_true",
                   help="use the synthetic benchmark's oracle rationales (no endpoint)")
  src.add_argument("--import_file", default=None,
                   help="import rationales from this JSON-lines file instead of calling a teacher")
  g.add_argument("--id_field", default="id", help="import: field holding the example id")
  g.add_argument("--rationale_field", default="rationale", help="import: field with the text")
  g.add_argument("--answer_field", default=None,
                 help="import: field with the answer (label, choice text or yes/no), used when the "
                 "text states none")
  g.add_argument("--sample_field", default=None, help="import: field with the sample index")
  g.add_argument("--teacher_field", default=None, help="import: field with the teacher's name")
  g.add_argument("--teacher", default=None, help="import: teacher name when there is no field")

  g = parser.add_argument_group("endpoint")
  g.add_argument("--base_url", type=flags.http_url, default=None,
                 help="e.g. https://api.openai.com/v1 or "
                 "http://localhost:8000/v1 (/chat/completions or /completions is appended)")
  g.add_argument("--model", default=None, help="model name sent to the endpoint")
  g.add_argument("--api_key_env", default="OPENAI_API_KEY",
                 help="environment variable holding the API key (unset: no Authorization header)")
  g.add_argument("--mode", choices=("chat", "completions"), default="chat")
  g.add_argument("--timeout", type=flags.positive_float, default=120.0,
                 help="seconds per socket operation (connect, send, each read)")
  g.add_argument("--deadline", type=flags.positive_float, default=None,
                 help="seconds one attempt may take in all, however slowly the server trickles "
                 "its answer (default: 3 x --timeout)")
  g.add_argument("--max_retries", type=flags.non_negative_int, default=8,
                 help="retries per call before it fails")
  g.add_argument("--max_backoff", type=flags.non_negative_float, default=60.0,
                 help="cap in seconds on one exponential-backoff sleep")
  g.add_argument("--max_retry_after", type=flags.non_negative_float, default=600.0,
                 help="cap in seconds on waiting for a server's Retry-After")
  g.add_argument("--max_in_flight", type=flags.positive_int, default=8,
                 help="most requests open at the server at once (an abandoned one counts until "
                 "its connection is closed)")
  g.add_argument("--max_config_errors", type=flags.positive_int, default=3,
                 help="stop the run after this many configuration errors in a row (refused "
                 "connection, unknown host, TLS, HTTP 400/401/403/404/422, a 200 that is not "
                 "JSON)")
  g.add_argument("--rpm", type=flags.positive_float, default=None,
                 help="requests per minute limit")
  g.add_argument("--tpm", type=flags.positive_float, default=None,
                 help="tokens per minute limit")

  g = parser.add_argument_group("sampling and prompts")
  g.add_argument("--n", type=flags.positive_int, default=10, help="rationales sampled per question")
  g.add_argument("--samples_per_request", type=flags.positive_int, default=None,
                 help="samples asked for in one request (default n; 1 for servers that ignore n)")
  g.add_argument("--temperature", type=flags.non_negative_float, default=0.7)
  g.add_argument("--max_tokens", type=flags.positive_int, default=256)
  g.add_argument("--top_p", type=flags.probability, default=None)
  g.add_argument("--seed", type=int, default=None,
                 help="send seed+first_sample with each request (for endpoints honouring seeds)")
  _bool_flag(g, "give_answer", True, "show the gold answer and ask the teacher to explain it "
             "(KARD); --no_give_answer: an honest few-shot teacher")
  g.add_argument("--exemplars", default=None,
                 help="JSON-lines exemplars (Example fields + \"explanation\") instead of the "
                 "built-in ones")
  g.add_argument("--num_exemplars", type=flags.non_negative_int, default=None,
                 help="use only the first K")

  g = parser.add_argument_group("filtering and output")
  g.add_argument("--max_per_example", type=flags.positive_int, default=None,
                 help="keep at most N gold-matching rationales per question (default all)")
  g.add_argument("--verifier", default=None, metavar="MODULE:FACTORY",
                 help="a verifier factory; its result's verify(example, rationale) must accept a "
                 "rationale for it to be kept")
  g.add_argument("--verifier_arg", action="append", default=[], metavar="KEY=VALUE",
                 help="keyword argument for the verifier factory (repeatable)")
  g.add_argument("--journal", default=None,
                 help="call journal (default DATA_DIR/rationales/journal.jsonl)")
  _bool_flag(g, "progress", True, "show a progress bar on stderr")


def job_from_args(args: argparse.Namespace):
  """The `teacher.collect.TeacherJob` these flags describe (its fields are the flags' names)."""
  from kard_jax.teacher.collect import TeacherJob

  return TeacherJob(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TeacherJob)})


def run(args: argparse.Namespace) -> int:
  from kard_jax.teacher import collect
  from kard_jax.teacher.client import FatalError

  try:
    summary, status = collect.collect(job_from_args(args))
  except collect.TeacherConfigError as e:
    print(f"kard teach: {e}", file=sys.stderr)
    return 2
  except FatalError as e:
    print(f"error: {e}; stopped (finished calls are kept in the journal)", file=sys.stderr)
    return 1
  if status and summary.get("last_permanent_error"):
    print(f"error: {summary['samples_missing']} samples could not be collected; the last "
          f"permanent error: {summary['last_permanent_error']}", file=sys.stderr)
  elif status:
    print(f"warning: {summary['samples_missing']} samples could not be collected; rerun the "
          "same command to retry only those", file=sys.stderr)
  print(json.dumps(summary, sort_keys=True))
  return status
