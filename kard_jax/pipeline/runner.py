"""The whole method on one benchmark: every stage in order, then the results table and plot.

  data -> knowledge base -> teacher rationales -> vocabulary -> BM25 index -> retrieval
       -> reranker -> students (one per method) -> evaluation (greedy, self-consistency)
       -> results/<name>.{json,md,png}

and, for the synthetic benchmark, the same for fine-tuning, reasoning distillation and KARD on
worlds of other sizes (`sweep_entities`), for accuracy against knowledge-base size. Stages are
content-addressed (see `stages`): a second run reuses everything finished, `only` runs the named
stages alone (their inputs must be finished), `force` re-runs them.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import threading
import time
from typing import Any, Callable, Sequence

from kard_jax.pipeline import benchmark_stages as bs
from kard_jax.pipeline import methods as methods_lib
from kard_jax.report import results, tables
from kard_jax.pipeline import student_stages as ss
from kard_jax.pipeline.config import PipelineConfig
from kard_jax.pipeline.stages import MissingStage, Store
from kard_jax.report import intervals
from kard_jax.report import stamp as stamp_lib


def _log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Outcome:
  """What a run produced: result rows and where the report went."""
  results: dict[str, Any]
  paths: dict[str, str]
  stages: list[dict[str, Any]]


def _examples(bench: bs.Bench, split: str):
  from kard_jax.data.example import read_examples  # pylint: disable=import-outside-toplevel

  return read_examples(bench.files[f"examples/{split}.jsonl"])


@dataclasses.dataclass(frozen=True)
class GinRead:
  """Objects a run needs from gin files: `build()`, called while gin's configuration is exactly
  `files` + `bindings`, returns them. The process edge executes every read of a run (see
  `gin_reads`) before any stage runs: `kard_jax.cli.commands.pipeline.read_stage_configs`."""
  files: tuple[str, ...]
  bindings: tuple[str, ...]
  build: Callable[[], Any]


@dataclasses.dataclass(frozen=True)
class StageConfigs:
  """What the stages of a run build from gin files, read at the pipeline's entry: the
  reranker's `stage.TrainConfig` (None when no method needs it) and each student, by (training
  method, seed)."""
  reranker: Any = None
  students: dict[tuple[str, int], ss.Student] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_built(cls, built: dict[Any, Any]) -> "StageConfigs":
    """From {key of `gin_reads`: what its build returned}."""
    return cls(reranker=built.get("reranker"),
               students={k[1:]: v for k, v in built.items() if k != "reranker"})

  def student(self, method_key: str, seed: int) -> ss.Student:
    owner = methods_lib.training_owner(method_key)
    try:
      return self.students[(owner, seed)]
    except KeyError:
      raise KeyError(f"no student read for method {owner!r}, seed {seed} (runner.gin_reads "
                     "lists what a run reads)") from None


def entry_vocab_size(config: PipelineConfig) -> int:
  """The students' vocabulary rows, known before the vocabulary stage runs: a given
  vocabulary's pieces, or the trained one's (`config.vocab_size`: SentencePiece trains exactly
  that many), plus the extra ids, rounded up (`student_stages.vocab_size_for`)."""
  if config.vocab_file:
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel

    from kard_jax.data.errors import InputError  # pylint: disable=import-outside-toplevel
    try:
      pieces = spm.SentencePieceProcessor(model_file=config.vocab_file).get_piece_size()
    except (OSError, RuntimeError) as e:
      raise InputError(config.vocab_file, f"not a SentencePiece model ({e})") from None
  else:
    pieces = config.vocab_size
  return ss.vocab_size_for(pieces + config.vocab_extra_ids)


def _students(config: PipelineConfig) -> list[tuple[str, int]]:
  """(training method, seed) of every student a run trains (Sci-CoT's stage 1 at Sci-CoT's
  seeds too)."""
  keys = list(config.methods) + (list(config.sweep_methods) if config.sweep_entities else [])
  out: dict[tuple[str, int], None] = {}
  for key in dict.fromkeys(keys):
    if methods_lib.get(key).train_task is None:
      continue
    for seed in config.seeds_for(key):
      if key == "scicot":
        out[(methods_lib.training_owner(methods_lib.SCICOT_RATIONALE_FROM), seed)] = None
      out[(methods_lib.training_owner(key), seed)] = None
  return list(out)


def gin_reads(config: PipelineConfig) -> dict[Any, GinRead]:
  """Every gin read a run of `config` needs, by key: "reranker" (its `stage.TrainConfig`, when
  a method needs the reranker) and ("student", method, seed) for each trained student."""
  reads: dict[Any, GinRead] = {}
  sweep_rerank = bool(config.sweep_entities) and "kard_rerank" in config.sweep_methods
  if "kard_rerank" in config.methods or sweep_rerank:
    def build_reranker():
      from kard_jax.reranker import stage  # pylint: disable=import-outside-toplevel
      return stage.TrainConfig.from_gin()
    reads["reranker"] = GinRead((bs.reranker_gin(config),), tuple(config.reranker_bindings),
                                build_reranker)
  vocab_size = entry_vocab_size(config)
  for owner, seed in _students(config):
    gin_file, bindings, build = ss.student_read(config, owner, vocab_size, seed)
    reads[("student", owner, seed)] = GinRead((gin_file,), bindings, build)
  return reads


def prepare(store: Store, bench: bs.Bench, config: PipelineConfig, *, need_reranker: bool,
            synthetic_overrides: dict[str, Any] | None = None, reranker_config: Any = None) -> bool:
  """Data, knowledge base, teacher, vocabulary, index, retrieval (and the reranker, trained with
  `reranker_config`, the reranker's `stage.TrainConfig` read at the entry: `StageConfigs`).

  Returns False when a stage outside `--only` is missing (nothing after it can run)."""
  try:
    bs.data(store, bench, config, synthetic_overrides)
    bs.knowledge_base(store, bench, config)
    bs.teacher(store, bench, config)
    bs.vocabulary(store, bench, config)
    bs.index(store, bench, config)
    bs.retrieval(store, bench, config)
  except MissingStage as e:
    store.skipped.append(str(e))
    _log(f"[{bench.name}] stopped: {e}")
    return False
  if need_reranker:
    try:
      bs.reranker(store, bench, config, reranker_config)
    except MissingStage as e:  # only the reranked method needs it
      store.skipped.append(str(e))
      _log(f"[{bench.stage('reranker')}] skipped: {e}")
  return True


def _row(method: methods_lib.Method, decoding: ss.Decoding,
         per_seed: Sequence[dict[str, Any]], **extra: Any) -> dict[str, Any]:
  """One results row: the mean over seeds with its 95% interval, and every seed's numbers."""
  name = method.name + (" + self-consistency" if decoding.sampled else "")
  agg = intervals.aggregate(per_seed)
  row = {"method": method.key, "name": name, "decoding": decoding.name,
         "accuracy": agg["accuracy"], "interval": agg["interval"],
         "interval_kind": agg["interval_kind"], "counts": per_seed[0]["counts"],
         "parse_rate": _mean([s.get("parse_rate") for s in per_seed]), **extra}
  reasoned = [s["reasoning_accuracy"] for s in per_seed if s.get("reasoning_accuracy")]
  if len(reasoned) == len(per_seed):
    row["reasoning_accuracy"] = {g: _mean([r[g] for r in reasoned]) for g in reasoned[0]}
  row["seeds"] = agg["seeds"]
  return row


def _mean(values: Sequence[float | None]) -> float | None:
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else None


def _seed_entry(seed: int, counted: dict[str, Any], **extra: Any) -> dict[str, Any]:
  return {"seed": seed, "accuracy": counted["accuracy"], "correct": counted["correct"],
          "counts": counted["counts"], "parse_rate": counted.get("parse_rate"), **extra}


def evaluate_methods(store: Store, bench: bs.Bench, config: PipelineConfig,
                     method_keys: Sequence[str], configs: StageConfigs, *,
                     self_consistency: bool, group_field: str | None) -> list[dict[str, Any]]:
  """Trains and evaluates each method (its students from `configs`); returns one results row
  per (method, decoding)."""
  pieces = bs.vocab_pieces(bench, config.vocab_extra_ids)
  if not config.vocab_file:
    # Trained vocabularies get the rows asked for even when a small corpus gave fewer pieces,
    # so students of every benchmark variant share one shape (and one compiled program).
    pieces = max(pieces, config.vocab_size + config.vocab_extra_ids)
  vocab_size, read_for = ss.vocab_size_for(pieces), entry_vocab_size(config)
  if vocab_size != read_for:  # the students' models were built for read_for rows
    raise RuntimeError(f"[{bench.name}] the vocabulary has {pieces} pieces ({vocab_size} rows), "
                       f"but the students were read for {read_for} rows")
  examples = _examples(bench, config.eval_split)
  rows: list[dict[str, Any]] = []
  for key in method_keys:
    try:
      rows += _method_rows(store, bench, config, key, configs, examples,
                           self_consistency=self_consistency, group_field=group_field)
    except MissingStage as e:
      store.skipped.append(str(e))
      _log(f"[{bench.stage(key)}] skipped: {e}")
  return rows


def _method_rows(store: Store, bench: bs.Bench, config: PipelineConfig, key: str,
                 configs: StageConfigs, examples, *, self_consistency: bool,
                 group_field: str | None) -> list[dict[str, Any]]:
  """Trains and evaluates one method (reusing what is finished); its results rows."""
  method = methods_lib.get(key)
  if key == "teacher":
    art = bs.teacher_predictions(store, bench, config)
    if art is None:
      _log("[teacher] no stored teacher predictions configured; no teacher row")
      return []
    counted = results.recount(art.file("teacher_predictions.jsonl"), examples, group_field)
    if config.teacher_predictions == "oracle":
      method = dataclasses.replace(method, name=methods_lib.ORACLE_NAME)
    return [_row(method, ss.Decoding("stored"), [_seed_entry(config.seeds[0], counted)])]
  decodings = [ss.GREEDY]
  if (self_consistency and method.rationale and config.self_consistency > 1
      and key in config.self_consistency_methods):
    decodings.append(ss.self_consistency(config.self_consistency))
  per_seed: dict[str, list[dict[str, Any]]] = {d.name: [] for d in decodings}
  for seed in config.seeds_for(key):
    if key == "scicot":
      stage1_student = configs.student(methods_lib.SCICOT_RATIONALE_FROM, seed)
      stage1 = ss.train(store, bench, config, stage1_student)
      rationale_model = methods_lib.get(methods_lib.SCICOT_RATIONALE_FROM)
      firsts = {split: ss.evaluate(store, bench, config, rationale_model, ss.GREEDY, stage1,
                                   stage1_student, split)
                for split in ss.scicot_splits(config)}
      ss.scicot_rationales(store, bench, config, firsts, seed)
    student = configs.student(key, seed)
    trained = ss.train(store, bench, config, student)
    for decoding in decodings:
      evaluated = ss.evaluate(store, bench, config, method, decoding, trained, student)
      predictions = evaluated.file("predictions.jsonl")
      counted = results.recount(predictions, examples, group_field)
      extra = {"eval_dir": os.path.relpath(evaluated.path, store.root)}
      if method.rationale and not decoding.sampled:
        extra["reasoning_accuracy"] = results.reasoning_recount(
            predictions, examples, group_field)["accuracy"]
      per_seed[decoding.name].append(_seed_entry(seed, counted, **extra))
  return [_row(method, d, per_seed[d.name]) for d in decodings]


def _group_field(config: PipelineConfig) -> str | None:
  if config.group_field:
    return config.group_field
  return "entity_split" if config.benchmark == "synthetic" else None


def run(config: PipelineConfig, work_dir: str, configs: StageConfigs, *,
        only: Sequence[str] | None = None, force: Sequence[str] = (),
        command: str = "kard pipeline", write: bool = True) -> Outcome:
  """Runs (or reuses) every stage for `config` under `work_dir`; writes the report.

  `configs` holds what the stages build from gin files, read at the process edge from
  `gin_reads(config)` (`kard_jax.cli.commands.pipeline.read_stage_configs`)."""
  measurement = stamp_lib.Measurement(packages=("jax", "jaxlib", "flax", "optax", "numpy"),
                                      argv=shlex.split(command))
  measurement.__enter__()
  commit, dirty = stamp_lib.git_state()  # the code that runs, not the tree when it finished
  load_samples: list[float] = []
  sampler = _LoadSampler(load_samples)
  start = time.time()
  store = Store(work_dir, runnable=only, force=force, log=_log)
  group_field = _group_field(config)
  main = bs.Bench(config.benchmark, config.benchmark,
                  os.path.join(store.root, "data", config.benchmark))
  need_reranker = "kard_rerank" in config.methods
  reranker_config = configs.reranker
  rows: list[dict[str, Any]] = []
  if prepare(store, main, config, need_reranker=need_reranker, reranker_config=reranker_config):
    rows = evaluate_methods(store, main, config, config.methods, configs,
                            self_consistency=True, group_field=group_field)

  sweep_rows: list[dict[str, Any]] = []
  sweep_retrieval: dict[str, Any] = {}
  if config.sweep_entities:
    base = (config.synthetic or {}).get("num_entities")
    if base is None:
      from kard_jax.data.synthetic import SyntheticConfig  # pylint: disable=import-outside-toplevel
      base = SyntheticConfig().num_entities
    for n in sorted(set(config.sweep_entities) | {base}):
      if n == base:
        bench, keys = main, [k for k in config.sweep_methods if k in config.methods]
        bench_rows = [r for r in rows if r["method"] in keys and r["decoding"] == "greedy"]
        missing = [k for k in config.sweep_methods if k not in keys]
      else:
        bench = bs.Bench(f"{config.benchmark}_e{n}", config.benchmark,
                         os.path.join(store.root, "data", f"{config.benchmark}_e{n}"))
        bench_rows, missing = [], list(config.sweep_methods)
        if not prepare(store, bench, config, need_reranker="kard_rerank" in missing,
                       synthetic_overrides={"num_entities": n}, reranker_config=reranker_config):
          continue
      if missing:
        bench_rows += evaluate_methods(store, bench, config, missing, configs,
                                       self_consistency=False, group_field=group_field)
      for r in bench_rows:
        sweep_rows.append({"num_entities": n, **{k: r[k] for k in (
            "method", "name", "accuracy", "interval", "interval_kind", "counts",
            "reasoning_accuracy", "seeds") if k in r}})
      recall = retrieval_summary(bench)
      if recall:
        sweep_retrieval[str(n)] = recall
    if "spiece.model" in main.files:  # the main benchmark's tasks again, for later users
      ss.register_tasks(main, config)

  out = {
      "command": command,
      "benchmark": config.benchmark,
      "split": config.eval_split,
      "config": config.to_json(),
      "rows": rows,
      "timing": {"total_seconds": round(time.time() - start, 1),
                 "stages": {r["stage"]: round(r["seconds"], 1) for r in store.records},
                 "reused": sum(r["status"] == "reused" for r in store.records),
                 "ran": sum(r["status"] == "ran" for r in store.records)},
  }
  ran_here = {r["dir"] for r in store.records if r["status"] == "ran"}
  earlier = {r["dir"] for r in store.records if r["status"] == "reused"} - ran_here
  if earlier:  # the wall time then leaves out what those stages took
    out["timing"]["note"] = f"{len(earlier)} stages reused from earlier runs"
    out["timing"]["reused_stage_seconds"] = round(sum(
        r["seconds"] for r in store.records if r["status"] == "reused" and r["dir"] in earlier), 1)
  if sweep_rows:
    out["sweep"] = {"x": "num_entities",
                    "groups": ["unseen", "seen"] if group_field else ["all"],
                    "rows": sweep_rows}
    if sweep_retrieval:
      out["sweep"]["retrieval"] = sweep_retrieval
  retrieval_rows = retrieval_summary(main)
  if retrieval_rows:
    out["retrieval"] = retrieval_rows
  sampler.stop()
  paths: dict[str, str] = {}
  if store.skipped:
    _log(f"{len(store.skipped)} stages were not run (see --only); no report written")
  elif write:
    measurement.__exit__(None, None, None)
    stamp = measurement.stamp(commit=commit, dirty=dirty, load_avg_1m_during={
        "samples": len(load_samples), "mean": round(sum(load_samples) / len(load_samples), 2),
        "max": max(load_samples)} if load_samples else None)
    paths = tables.write_report(out, config.results_dir, config.name, with_plot=config.plot,
                                stamp=stamp)
  return Outcome(out, paths, store.records)


class _LoadSampler:
  """Samples the 1-minute load average every `period` seconds while the pipeline runs: the
  stamp's before/after values alone say little about a run of many minutes."""

  def __init__(self, samples: list[float], period: float = 15.0):
    self._samples, self._period = samples, period
    self._stop = threading.Event()
    self._take()
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._thread.start()

  def _take(self) -> None:
    load = stamp_lib.load_average_1m()
    if load is not None:
      self._samples.append(load)

  def _loop(self) -> None:
    while not self._stop.wait(self._period):
      self._take()

  def stop(self) -> None:
    self._stop.set()
    self._thread.join()
    self._take()


def retrieval_summary(bench: bs.Bench, split: str | None = None,
                      ks: Sequence[int] = (1, 3, 5)) -> dict[str, dict[str, float]]:
  """Recall@k, in %, of each question's long-tail fact: the first of its examples'
  extra["gold_passages"] (the synthetic subject's own passage), per retrieval file."""
  from kard_jax.data.example import read_examples  # pylint: disable=import-outside-toplevel
  from kard_jax.data import jsonl  # pylint: disable=import-outside-toplevel

  out: dict[str, dict[str, float]] = {}
  split = split or "test"
  path = bench.files.get(f"examples/{split}.jsonl")
  if not path:
    return out
  gold = {ex.id: set((ex.extra.get("gold_passages") or ())[:1]) for ex in read_examples(path)}
  if not any(gold.values()):
    return out
  for name, rel in (("question BM25", f"retrieval/question_{split}.jsonl"),
                    ("reranker", f"retrieval/reranked_{split}.jsonl")):
    if rel not in bench.files:
      continue
    hits = {k: 0 for k in ks}
    total = 0
    for _, obj in jsonl.iter_jsonl(bench.files[rel]):
      want = gold.get(str(obj["id"]))
      if not want:
        continue
      ranked = [p["id"] for p in obj["passages"]]
      total += 1
      for k in ks:
        hits[k] += int(bool(want & set(ranked[:k])))
    if total:
      out[name] = {f"recall@{k}": 100.0 * hits[k] / total for k in ks}
  return out


def describe_stages(config: PipelineConfig) -> list[str]:
  """The stage families, in order (for --help and --only)."""
  del config
  return ["data", "kb", "teacher", "vocab", "index", "retrieval", "reranker", "train", "eval",
          "scicot_rationales", "teacher_predictions"]


__all__ = ["run", "prepare", "evaluate_methods", "Outcome", "MissingStage", "describe_stages"]
