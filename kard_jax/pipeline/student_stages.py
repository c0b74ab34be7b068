"""The student stages: train a method's student, decode the evaluation split, and Sci-CoT's hand-over.

A student is what its method's gin file describes (plus the pipeline's bindings: vocabulary size,
seed): a `Student`, read once at the pipeline's entry (`student_read`, executed by the process
edge, `kard_jax.cli.commands.pipeline`) into a `training.train.TrainConfig`. The training stage
gives that config its model directory and runs it with `training.train.run`, after registering
the benchmark's SeqIO tasks on the assembled view; no stage reads gin. A stage's key covers the
gin files (with their includes), the bindings and the content of exactly the files its task
reads, so e.g. adding a method or re-running the reranker never retrains answer-only fine-tuning.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Sequence

from kard_jax.data import jsonl
from kard_jax.decoding.adapters import DecodeConfig
from kard_jax.pipeline import methods as methods_lib
from kard_jax.pipeline.benchmark_stages import Bench
from kard_jax.pipeline.config import PipelineConfig, method_gin
from kard_jax.pipeline.stages import Artifact, Store

_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]", re.M)
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Decoding:
  """A named way to decode an evaluation (its length comes from the pipeline's config);
  `config` None for predictions that are stored, not decoded (the teacher's)."""
  name: str
  config: DecodeConfig | None = None

  @property
  def sampled(self) -> bool:
    return self.config is not None and self.config.outputs_per_input > 1


GREEDY = Decoding("greedy", DecodeConfig(method="greedy"))


def self_consistency(n: int) -> Decoding:
  """KARD's evaluation: n rationales sampled with top-k 50 / top-p 0.95, majority vote."""
  return Decoding(f"self-consistency@{n}",
                  DecodeConfig(method="sample", num_decodes=n, top_k=50, top_p=0.95))


def resolve_gin(path: str) -> str:
  for base in ("", os.getcwd(), _REPO):
    full = os.path.join(base, path) if base else path
    if os.path.isfile(full):
      return os.path.abspath(full)
  raise FileNotFoundError(f"gin file {path!r} not found (relative paths resolve against the "
                          "working directory and the repository root)")


def gin_closure(path: str) -> list[str]:
  """A gin file and the project's files it includes, recursively (in include order)."""
  out: list[str] = []

  def visit(p: str):
    full = resolve_gin(p)
    if full in out:
      return
    out.append(full)
    with open(full, encoding="utf-8") as f:
      for inc in _INCLUDE.findall(f.read()):
        try:
          visit(inc)
        except FileNotFoundError:
          if not inc.startswith("t5x/"):
            raise
  visit(path)
  return out


def gin_inputs(store: Store, path: str) -> dict[str, Artifact]:
  return {f"gin_{i}": store.source(p, "gin") for i, p in enumerate(gin_closure(path))}


def vocab_size_for(pieces: int) -> int:
  """The model's vocabulary rows: pieces (+ extra ids) rounded up to a multiple of 128."""
  return -(-pieces // 128) * 128


def register_tasks(bench: Bench, config: PipelineConfig,
                   max_input_length: int | None = None) -> list[str]:
  """(Re-)registers the benchmark's tasks on its assembled view, with this run's settings
  (`max_input_length`: the student's training input length, see `input_length`)."""
  import tasks  # pylint: disable=import-outside-toplevel

  return tasks.register_benchmark(
      bench.benchmark, bench.view, bench.files["spiece.model"],
      extra_ids=config.vocab_extra_ids, num_passages=config.num_passages,
      max_rationales=config.max_rationales, multitask_rates=tuple(config.multitask_rates),
      max_input_length=max_input_length)


# The model directory while a student's gin is read at the pipeline's entry, before its stage
# (whose directory is the model's) exists; the training stage puts the real one in its place.
MODEL_DIR_PLACEHOLDER = "<the training stage's model directory>"


@dataclasses.dataclass(frozen=True)
class Student:
  """A method's student, built from its gin file and `bindings` at the pipeline's entry:
  `train_config` (model, task, optimizer, steps; model_dir `MODEL_DIR_PLACEHOLDER`) and
  `input_length` (TASK_FEATURE_LENGTHS['inputs']: the length its task fits inputs to, in
  training and in evaluation alike; None when the gin file binds none). `method` is the
  training method (a student's owner, see `methods.training_owner`), `seed` its training seed."""
  method: str
  seed: int
  gin_file: str
  bindings: tuple[str, ...]
  train_config: Any  # training.train.TrainConfig
  input_length: int | None

  def at(self, model_dir: str) -> Any:
    """`train_config` with its model directory (also in the config.gin text it writes)."""
    return dataclasses.replace(
        self.train_config, model_dir=model_dir,
        config_text=self.train_config.config_text.replace(MODEL_DIR_PLACEHOLDER, model_dir))


def student_bindings(config: PipelineConfig, vocab_size: int, seed: int) -> tuple[str, ...]:
  """The pipeline's bindings for a student: vocabulary rows, training seed (gin RANDOM_SEED:
  initialisation and data order), then the config's `train_bindings`."""
  return (f"VOCAB_SIZE={vocab_size}", f"RANDOM_SEED={seed}", *config.train_bindings)


def student_read(config: PipelineConfig, method_key: str, vocab_size: int,
                 seed: int) -> tuple[str, tuple[str, ...], Any]:
  """(gin file, bindings, build) for the student of `method_key` (its training owner's):
  `build()`, called while gin's configuration is exactly that file and those bindings, returns
  the `Student`."""
  owner = methods_lib.training_owner(method_key)
  gin_file = method_gin(config, owner)
  bindings = student_bindings(config, vocab_size, seed)

  def build() -> Student:
    import gin  # pylint: disable=import-outside-toplevel

    from kard_jax.training import train as train_lib  # pylint: disable=import-outside-toplevel

    train_config = train_lib.config_from_gin(model_dir=MODEL_DIR_PLACEHOLDER)
    rest = dataclasses.replace(train_config, model_dir="", config_text="")
    if MODEL_DIR_PLACEHOLDER in repr(rest):
      raise ValueError(f"{gin_file}: under `kard pipeline`, MODEL_DIR may bind train.model_dir "
                       "only (each student's directory is its training stage's)")
    try:
      lengths = gin.query_parameter("%TASK_FEATURE_LENGTHS")
    except ValueError:
      lengths = None
    length = int(lengths["inputs"]) if lengths and lengths.get("inputs") else None
    return Student(owner, seed, gin_file, bindings, train_config, length)

  return gin_file, bindings + (f"MODEL_DIR = {MODEL_DIR_PLACEHOLDER!r}",), build


def _reads(method: methods_lib.Method) -> tuple[str, ...]:
  """The artifacts a method's training task reads."""
  needs = ["data", "vocab"]
  if method.key != "answer_only":
    needs.append("teacher")
  if method.key.startswith("kard"):
    needs.append("retrieval")
  return tuple(needs)


def train(store: Store, bench: Bench, config: PipelineConfig, student: Student) -> Artifact:
  """`student` trained (its method's, from its seed; see `student_read`)."""
  owner, seed = methods_lib.get(student.method), student.seed
  inputs = {k: bench.need(k) for k in _reads(owner)}
  inputs.update(gin_inputs(store, student.gin_file))
  settings = {"bindings": list(student.bindings), "num_passages": config.num_passages,
              "max_rationales": config.max_rationales, "extra_ids": config.vocab_extra_ids}
  if owner.key == "multitask":
    settings["multitask_rates"] = list(config.multitask_rates)

  def make(out):
    from kard_jax.training import train as train_lib  # pylint: disable=import-outside-toplevel

    register_tasks(bench, config, student.input_length)
    train_lib.run(student.at(os.path.join(out, "model")))
    return {"method": owner.key}

  art = store.run(bench.stage("train", owner.key, f"s{seed}"), make, inputs=inputs,
                  config=settings)
  bench.artifacts[f"train/{owner.key}/s{seed}"] = art
  return art


# The fields of an evaluator's predictions.jsonl line that Sci-CoT's hand-over reads.
_PREDICTION_FIELDS = ("id", "rationales", "answers", "prediction")


def stage1_rationale(obj: dict[str, Any], path: str, lineno: int) -> tuple[str, str | None]:
  """(rationale text, answer) of one stage-1 prediction line: the first decode verbatim, or with
  several decodes (self-consistency) the first one whose answer is the voted prediction."""
  from kard_jax.data.errors import InputError  # pylint: disable=import-outside-toplevel

  for field in _PREDICTION_FIELDS:
    if field not in obj:
      raise InputError(path, f"missing field {field!r} (Sci-CoT stage 2 reads stage 1's "
                       "decoded rationales)", lineno)
  texts, answers, prediction = obj["rationales"], obj["answers"], obj["prediction"]
  if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
    raise InputError(path, "field 'rationales' must be a non-empty list of decoded texts", lineno)
  if not isinstance(answers, list) or len(answers) != len(texts):
    raise InputError(path, "field 'answers' must hold one answer per rationale", lineno)
  chosen = next((i for i, a in enumerate(answers) if prediction is not None and a == prediction),
                0)
  return texts[chosen], prediction


def scicot_splits(config: PipelineConfig) -> tuple[str, ...]:
  """The splits Sci-CoT stage 1 is decoded on: the evaluation split, and validation (which
  T5X's train-eval of the stage-2 task reads)."""
  return tuple(dict.fromkeys((config.eval_split, "validation")))


def scicot_rationales(store: Store, bench: Bench, config: PipelineConfig,
                      stage1_evals: dict[str, Artifact], seed: int = 0) -> Artifact:
  """rationales/scicot_{split}.jsonl for each split of `stage1_evals` ({split: stage-1
  evaluation of training seed `seed`}): stage 1's generated rationales, verbatim, with the
  answer stage 1 reached."""
  from kard_jax.data.rationale import Rationale, write_rationales  # pylint: disable=import-outside-toplevel

  splits = sorted(stage1_evals)

  def make(out):
    counts = {}
    for split in splits:
      path = stage1_evals[split].file("predictions.jsonl")
      rows = []
      for lineno, obj in jsonl.iter_jsonl(path):
        text, answer = stage1_rationale(obj, path, lineno)
        rows.append(Rationale(str(obj["id"]), 0, text, answer, "scicot-stage1",
                              {"decoding": "greedy"}))
      write_rationales(os.path.join(out, "rationales", f"scicot_{split}.jsonl"), rows)
      counts[split] = len(rows)
    return {"rationales": counts}

  art = store.run(bench.stage("scicot_rationales", f"s{seed}"), make,
                  inputs={f"stage1_{s}": stage1_evals[s] for s in splits},
                  config={"splits": splits})
  bench.publish(art, {f"rationales/scicot_{s}.jsonl": f"rationales/scicot_{s}.jsonl"
                      for s in splits})
  bench.artifacts["scicot_rationales"] = art
  return art


def evaluate(store: Store, bench: Bench, config: PipelineConfig, method: methods_lib.Method,
             decoding: Decoding, trained: Artifact, student: Student,
             split: str | None = None) -> Artifact:
  """predictions.jsonl + metrics.json of `method`'s student (`trained` from `student`) on
  `split` (default: the evaluation split)."""
  from kard_jax.decoding import evaluate as eval_lib  # pylint: disable=import-outside-toplevel

  import tasks  # pylint: disable=import-outside-toplevel

  task = tasks.task_name(bench.benchmark, method.eval_task)
  decode = dataclasses.replace(decoding.config, max_new_tokens=config.max_decode_length)
  inputs = {"model": trained, **eval_inputs(bench, method)}
  split = split or config.eval_split
  # The input length the student was trained on: its task fits evaluation inputs to it too.
  max_input_length = student.input_length
  settings = {"task": method.eval_task, "split": split, "max_input_length": max_input_length,
              "decoding": dataclasses.asdict(decode), "batch_size": config.eval_batch_size,
              "num_passages": config.num_passages}
  if decoding.sampled:
    settings["seed"] = config.eval_seed  # greedy decoding does not depend on it

  def make(out):
    register_tasks(bench, config, max_input_length)
    metrics, _ = eval_lib.evaluate(os.path.join(trained.path, "model"), task, decode,
                                   split=split, batch_size=config.eval_batch_size,
                                   out_dir=out, seed=config.eval_seed)
    return {k: metrics[k] for k in ("accuracy", "num_examples", "answer_parse_rate")}

  name = method.key if not decoding.sampled else f"{method.key}_sc{decode.num_decodes}"
  if split != config.eval_split:
    name += f"_{split}"
  stage = bench.stage("eval", name, f"s{student.seed}")
  return store.run(stage, make, inputs=inputs, config=settings)


def eval_inputs(bench: Bench, method: methods_lib.Method) -> dict[str, Artifact]:
  """What a method's evaluation task reads besides the checkpoint."""
  inputs = {"data": bench.need("data"), "vocab": bench.need("vocab")}
  if "question" in method.reads:
    inputs["retrieval"] = bench.need("retrieval")
  if "reranked" in method.reads:
    inputs["reranker"] = bench.need("reranker")
  if method.key == "scicot":
    inputs["scicot_rationales"] = bench.need("scicot_rationales")
  return inputs


def group_counts(values: Sequence[Any]) -> dict[str, int]:
  counts: dict[str, int] = {}
  for v in values:
    counts[str(v)] = counts.get(str(v), 0) + 1
  return counts
