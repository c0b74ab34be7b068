"""SeqIO registration of every method's task for a benchmark directory.

For a benchmark B prepared under DATA/B/ (see `tasks.records` for the files), `register_benchmark`
adds, with names `<prefix>_<B>_<suffix>`:
  answer_only          question -> "The answer is C."            (fine-tuning)
  reasoning            question -> rationale                      (reasoning distillation)
  multitask_rationale  "[rationale] " question -> rationale      (distilling step-by-step)
  multitask_answer     "[answer] " question -> answer
  multitask            a Mixture of the two above
  kard_bm25            question + passages -> rationale; eval passages: BM25 with the question
  kard_rerank          question + passages -> rationale; eval passages: the reranker's top-k
  scicot_rationale     question -> rationale                      (Sci-CoT stage 1)
  scicot_answer        question + rationale (answer removed) -> answer   (Sci-CoT stage 2)
Each has splits train / validation / test, features `inputs` / `targets` tokenised with
DATA/B/spiece.model (EOS appended), the pass-through strings `id`, `answer`, `choices` and the
int `sample`, and the metric `accuracy` of the parsed answer. Files are read when a dataset is
requested, never at registration, so tasks can be registered before a stage writes their data.
"""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import seqio
import tensorflow as tf

from kard_jax.data.errors import InputError
from tasks import metrics, records

BENCHMARKS = ("medqa", "strategyqa", "obqa", "arc_easy", "arc_challenge", "synthetic")
PREFIX = "kard"
MIXTURES = {"multitask": ("multitask_rationale", "multitask_answer")}
DEFAULT_DATA_DIR = os.path.join("work_dir", "data")
_NAME = re.compile(r"^[a-z0-9_]+$")
_STRING_FIELDS = ("id", "answer", "choices", "inputs", "targets")


def task_name(benchmark: str, suffix: str, prefix: str = PREFIX) -> str:
  return f"{prefix}_{benchmark}_{suffix}"


def task_names(benchmark: str, prefix: str = PREFIX) -> list[str]:
  """Every task and mixture name `register_benchmark` adds for `benchmark`."""
  return [task_name(benchmark, s, prefix) for s in list(records.TASKS) + list(MIXTURES)]


def data_root() -> str:
  """$KARD_DATA_DIR, else work_dir/data under the working directory (made absolute)."""
  return os.path.abspath(os.environ.get("KARD_DATA_DIR") or DEFAULT_DATA_DIR)


def _to_dataset(rows: Sequence[dict[str, Any]]) -> tf.data.Dataset:
  columns = {k: tf.constant([r[k] for r in rows], dtype=tf.string) for k in _STRING_FIELDS}
  columns["sample"] = tf.constant([r["sample"] for r in rows], dtype=tf.int32)
  return tf.data.Dataset.from_tensor_slices(columns)


def _source(spec: records.TaskSpec, data_dir: str, num_passages: int,
            max_rationales: int | None, max_input_length: int | None,
            vocab: seqio.Vocabulary) -> seqio.FunctionDataSource:
  def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    del shuffle_files, seed  # one in-memory "file"; seqio shuffles examples itself
    rows = records.build_rows(spec, data_dir, split, num_passages=num_passages,
                              max_rationales=max_rationales, max_input_length=max_input_length,
                              count_tokens=lambda text: len(vocab.encode(text)))
    if not rows:
      raise InputError(os.path.join(data_dir, "examples", f"{split}.jsonl"),
                       f"no {spec.method} rows for split {split!r}")
    return _to_dataset(rows)

  return seqio.FunctionDataSource(dataset_fn, splits=records.SPLITS)


def register_benchmark(benchmark: str, data_dir, vocab_path=None, prefix: str = PREFIX, *,
                       extra_ids: int = 0, num_passages: int = 3,
                       max_rationales: int | None = None,
                       multitask_rates: tuple[float, float] = (1.0, 1.0),
                       max_input_length: int | None = None) -> list[str]:
  """Registers (or re-registers, replacing) every task of `benchmark` read from `data_dir`.

  `vocab_path` defaults to data_dir/spiece.model; `extra_ids` must match the model's (0 for our
  trained vocabularies, 100 for T5's). `num_passages`: passages given to KARD tasks (top-k);
  `max_rationales`: kept rationales per training question (None: all that reach the gold
  answer); `max_input_length`: the training input length (TASK_FEATURE_LENGTHS['inputs']):
  every input of every split is made to fit it by shortening passages or rationales, never the
  question, choices or cue (`kard_jax.data.prompts.fit_inputs`), so SeqIO's trimming never cuts
  a training input and evaluation reads the same text. Returns the registered names.
  """
  if not _NAME.match(benchmark) or not _NAME.match(prefix):
    raise ValueError(f"benchmark and prefix must match [a-z0-9_]+, got {benchmark!r}, {prefix!r}")
  data_dir = os.path.abspath(os.fspath(data_dir))
  vocab_path = os.fspath(vocab_path or os.path.join(data_dir, "spiece.model"))
  vocab = seqio.SentencePieceVocabulary(vocab_path, extra_ids=extra_ids)
  features = {"inputs": seqio.Feature(vocab, add_eos=True, required=True),
              "targets": seqio.Feature(vocab, add_eos=True, required=True)}
  names = []
  for suffix, spec in records.TASKS.items():
    name = task_name(benchmark, suffix, prefix)
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name, source=_source(spec, data_dir, num_passages, max_rationales, max_input_length,
                             vocab),
        output_features=features,
        preprocessors=[seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                       seqio.preprocessors.append_eos_after_trim],
        postprocess_fn=metrics.postprocess, metric_fns=[metrics.accuracy])
    names.append(name)
  for suffix, parts in MIXTURES.items():
    name = task_name(benchmark, suffix, prefix)
    seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(
        name, [(task_name(benchmark, p, prefix), rate) for p, rate in zip(parts, multitask_rates)])
    names.append(name)
  return names


def register_all(root: str | None = None) -> list[str]:
  """Registers every benchmark under `root` (default `data_root()`), with the environment's
  vocabulary settings: $KARD_VOCAB_FILE (one spiece.model for all benchmarks, e.g. Flan-T5's;
  default DATA/<benchmark>/spiece.model), $KARD_VOCAB_EXTRA_IDS (default 0; 100 for T5's) and
  $KARD_NUM_PASSAGES (default 3) and $KARD_MAX_INPUT_LENGTH (default none: set it to the
  training TASK_FEATURE_LENGTHS['inputs'] so over-long inputs are fitted, not cut)."""
  root = root or data_root()
  vocab_path = os.environ.get("KARD_VOCAB_FILE") or None
  extra_ids = int(os.environ.get("KARD_VOCAB_EXTRA_IDS") or 0)
  num_passages = int(os.environ.get("KARD_NUM_PASSAGES") or 3)
  max_input_length = int(os.environ.get("KARD_MAX_INPUT_LENGTH") or 0) or None
  names = []
  for benchmark in BENCHMARKS:
    names += register_benchmark(benchmark, os.path.join(root, benchmark), vocab_path,
                                extra_ids=extra_ids, num_passages=num_passages,
                                max_input_length=max_input_length)
  return names
