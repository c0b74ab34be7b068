"""`collect(TeacherJob)`: a benchmark's rationale file from one teacher source.

The sources: an OpenAI-compatible endpoint (resumable: every finished call is journaled), the
synthetic benchmark's oracle (`offline`), or a rationale file made elsewhere (`import_file`).
Whatever the source, rationales are filtered by the gold answer (and an optional verifier) and
written atomically to `out`. `kard teach` parses its flags into a `TeacherJob` (the fields are
its flags' names); the pipeline's teacher stage builds one from its config.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from kard_jax.data.example import Example, read_examples


class TeacherConfigError(ValueError):
  """A job that cannot run as configured (no endpoint given, unknown exemplars, ...)."""


@dataclasses.dataclass(frozen=True)
class TeacherJob:
  """What to teach, from where, and how to filter (see `kard teach --help` for each field)."""
  data_dir: str  # a prepared benchmark directory DATA/<benchmark>
  benchmark: str | None = None  # for the built-in exemplars (default: data_dir's name)
  split: str = "train"
  limit: int | None = None  # only the first N examples
  out: str | None = None  # default DATA_DIR/rationales/SPLIT.jsonl
  # source: an endpoint unless `offline` or `import_file`
  offline: bool = False
  import_file: str | None = None
  id_field: str = "id"
  rationale_field: str = "rationale"
  answer_field: str | None = None
  sample_field: str | None = None
  teacher_field: str | None = None
  teacher: str | None = None
  # endpoint
  base_url: str | None = None
  model: str | None = None
  api_key_env: str = "OPENAI_API_KEY"
  mode: str = "chat"
  timeout: float = 120.0
  deadline: float | None = None
  max_retries: int = 8
  max_backoff: float = 60.0
  max_retry_after: float = 600.0
  max_in_flight: int = 8
  max_config_errors: int = 3
  rpm: float | None = None
  tpm: float | None = None
  # sampling and prompts
  n: int = 10
  samples_per_request: int | None = None
  temperature: float = 0.7
  max_tokens: int = 256
  top_p: float | None = None
  seed: int | None = None
  give_answer: bool = True
  exemplars: str | None = None
  num_exemplars: int | None = None
  # filtering and output
  max_per_example: int | None = None
  verifier: str | None = None  # MODULE:FACTORY
  verifier_arg: Sequence[str] = ()  # KEY=VALUE arguments of the verifier factory
  journal: str | None = None  # default DATA_DIR/rationales/journal.jsonl
  progress: bool = True

  @property
  def out_path(self) -> str:
    return self.out or os.path.join(self.data_dir, "rationales", f"{self.split}.jsonl")


def _verifier(job: TeacherJob):
  if not job.verifier:
    return None
  from kard_jax.teacher import filtering  # pylint: disable=import-outside-toplevel

  options = {}
  for item in job.verifier_arg:
    key, sep, value = item.partition("=")
    if not sep:
      raise TeacherConfigError(f"verifier argument {item!r} must be KEY=VALUE")
    options[key] = value
  return filtering.load_verifier(job.verifier, options)


def _examples(job: TeacherJob) -> list[Example]:
  examples = read_examples(os.path.join(job.data_dir, "examples", f"{job.split}.jsonl"))
  return examples[:job.limit] if job.limit is not None else examples


def _endpoint(job: TeacherJob, examples, verifier) -> tuple[dict[str, Any], int]:
  from kard_jax.teacher import exemplars as exemplars_lib  # pylint: disable=import-outside-toplevel
  from kard_jax.teacher.client import Client, ClientConfig  # pylint: disable=import-outside-toplevel
  from kard_jax.teacher.journal import Journal  # pylint: disable=import-outside-toplevel
  from kard_jax.teacher.prompts import PromptBuilder, Sampling  # pylint: disable=import-outside-toplevel
  from kard_jax.teacher.run import TeachConfig, teach  # pylint: disable=import-outside-toplevel

  if not job.base_url or not job.model:
    raise TeacherConfigError("--base_url and --model are required (or use --offline / "
                             "--import_file)")
  benchmark = job.benchmark or os.path.basename(os.path.normpath(job.data_dir))
  if job.exemplars:
    shots = exemplars_lib.load_exemplars(job.exemplars)
  else:
    try:
      shots = exemplars_lib.exemplars_for(benchmark)
    except ValueError as e:
      raise TeacherConfigError(f"{e} (--exemplars FILE or --benchmark NAME)") from None
  shots = shots[:job.num_exemplars] if job.num_exemplars is not None else shots
  client = Client(ClientConfig(
      base_url=job.base_url, model=job.model, api_key=os.environ.get(job.api_key_env) or None,
      mode=job.mode, timeout_s=job.timeout, deadline_s=job.deadline,
      max_retries=job.max_retries, max_permanent_errors=job.max_config_errors,
      max_backoff_s=job.max_backoff, max_retry_after_s=job.max_retry_after, rpm=job.rpm,
      tpm=job.tpm))
  builder = PromptBuilder(tuple(shots), give_answer=job.give_answer, mode=job.mode)
  sampling = Sampling(job.temperature, job.max_tokens, job.top_p)
  config = TeachConfig(n=job.n, samples_per_request=job.samples_per_request,
                       max_in_flight=job.max_in_flight, seed=job.seed,
                       max_per_example=job.max_per_example, progress=job.progress)
  journal_path = job.journal or os.path.join(job.data_dir, "rationales", "journal.jsonl")
  with Journal(journal_path) as journal:
    summary = teach(examples, client=client, builder=builder, sampling=sampling,
                    journal=journal, config=config, out_path=job.out_path, verifier=verifier)
  summary["journal"] = journal_path
  if client.last_permanent is not None:
    summary["last_permanent_error"] = client.last_permanent
  return summary, 1 if summary["samples_missing"] else 0


def collect(job: TeacherJob) -> tuple[dict[str, Any], int]:
  """Writes `job.out_path`; returns (summary, status). Status 1: some endpoint samples could not
  be collected (the summary's `samples_missing`; rerunning retries only those), else 0.

  Raises TeacherConfigError for a job that cannot run, `client.FatalError` when permanent errors
  (refused connection, HTTP 401/404, ...) stopped an endpoint run.
  """
  from kard_jax.teacher import offline  # pylint: disable=import-outside-toplevel
  from kard_jax.teacher.run import write_selected  # pylint: disable=import-outside-toplevel

  out = job.out_path
  verifier = _verifier(job)
  if job.offline:
    examples, rationales = offline.synthetic_oracle(job.data_dir, job.split)
    if job.limit is not None:
      examples = examples[:job.limit]
    return {"source": "synthetic-oracle", **write_selected(
        examples, rationales, out, max_per_example=job.max_per_example, verifier=verifier)}, 0
  if job.import_file:
    examples = _examples(job)
    fields = offline.Fields(job.id_field, job.rationale_field, job.answer_field,
                            job.sample_field, job.teacher_field)
    rationales, counts = offline.import_file(
        job.import_file, examples, fields,
        teacher=job.teacher or os.path.basename(job.import_file))
    return {"source": job.import_file, **counts, **write_selected(
        examples, rationales, out, max_per_example=job.max_per_example, verifier=verifier)}, 0
  return _endpoint(job, _examples(job), verifier)
