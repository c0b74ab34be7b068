"""The stages that prepare one benchmark: data, knowledge base, teacher, vocabulary, index,
retrieval and the reranker. Each returns a finished `Artifact` (see `stages.Store`).

Every stage writes only into its own directory. A command that expects the prepared-benchmark
layout (`kard teach`, `kard rerank`) gets a private `data/` workspace inside the stage directory:
links to the inputs it reads, real files for what it writes. `Bench.view` is the public layout
of the benchmark (work_dir/data/<name>), re-linked after every stage, that the SeqIO tasks read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError
from kard_jax.pipeline import layout
from kard_jax.pipeline.config import PipelineConfig
from kard_jax.pipeline.stages import Artifact, MissingStage, Store

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class Bench:
  """One prepared benchmark (the main run, or a synthetic variant of the KB-size sweep)."""
  name: str  # directory name under work_dir/data, and prefix of its stage names
  benchmark: str  # the benchmark it is an instance of (task names: kard_<benchmark>_<method>)
  view: str  # the assembled prepared-benchmark directory
  files: dict[str, str] = dataclasses.field(default_factory=dict)  # view path -> stage file
  artifacts: dict[str, Artifact] = dataclasses.field(default_factory=dict)

  def need(self, name: str) -> Artifact:
    """A finished upstream artifact, or MissingStage when it was not (allowed to be) made."""
    if name not in self.artifacts:
      raise MissingStage(f"stage {self.stage(name)!r} has not finished; run it first")
    return self.artifacts[name]

  def stage(self, *parts: str) -> str:
    return "/".join((self.name,) + parts)

  def publish(self, artifact: Artifact, files: Mapping[str, str]) -> None:
    """Shows `files` ({view path: path inside the artifact}) in the view."""
    for rel, inner in files.items():
      self.files[rel] = artifact.file(inner)
    layout.assemble(self.view, self.files)

  def workspace(self, out: str, rels: tuple[str, ...]) -> str:
    """`out`/data with links to the view files named by `rels` (paths or directory prefixes)."""
    chosen = {r: t for r, t in self.files.items()
              if any(r == p or r.startswith(p.rstrip("/") + "/") for p in rels)}
    return layout.assemble(os.path.join(out, "data"), chosen)


# ----------------------------------------------------------------------------- data


def data(store: Store, bench: Bench, config: PipelineConfig,
         synthetic_overrides: Mapping[str, Any] | None = None) -> Artifact:
  """examples/{split}.jsonl (+ the synthetic world's kb/, rationales/ and manifest.json)."""
  if config.benchmark == "synthetic":
    from kard_jax.data import synthetic  # pylint: disable=import-outside-toplevel

    params = {**(config.synthetic or {}), **(synthetic_overrides or {})}
    if "hops" in params:
      params["hops"] = tuple(params["hops"])
    synth = synthetic.SyntheticConfig(**params)

    def make(out):
      manifest = synthetic.write_benchmark(synth, out)
      return manifest["counts"]

    art = store.run(bench.stage("data"), make,
                    config={"synthetic": synth.to_json(), "generator": synthetic.VERSION})
    bench.publish(art, {**{f"examples/{s}.jsonl": f"examples/{s}.jsonl" for s in SPLITS},
                        "kb/passages.jsonl": "kb/passages.jsonl",
                        "manifest.json": "manifest.json"})
  else:
    from kard_jax.data import splits  # pylint: disable=import-outside-toplevel
    from kard_jax.data.example import write_examples  # pylint: disable=import-outside-toplevel

    files = splits.source_files(config.benchmark, config.source)
    inputs = {f"source_{s}": store.source(p) for s, p in sorted(files.items())}
    kwargs = {}
    if config.holdout_fraction is not None:
      kwargs["fraction"] = config.holdout_fraction
    if config.split_seed is not None:
      kwargs["seed"] = config.split_seed
    limits = dict(config.max_examples or {})

    def make(out):
      loaded = splits.load_splits(config.benchmark, files, **kwargs)
      counts = {}
      for split, examples in loaded.items():
        examples = examples[:limits[split]] if split in limits else examples
        write_examples(os.path.join(out, "examples", f"{split}.jsonl"), examples)
        counts[split] = len(examples)
      return counts

    art = store.run(bench.stage("data"), make, inputs=inputs,
                    config={"benchmark": config.benchmark, "split": kwargs, "limits": limits})
    bench.publish(art, {f"examples/{s}.jsonl": f"examples/{s}.jsonl" for s in SPLITS})
  bench.artifacts["data"] = art
  return art


def knowledge_base(store: Store, bench: Bench, config: PipelineConfig) -> Artifact:
  """kb/passages.jsonl: the synthetic world's passages, or the ingested knowledge-base files."""
  if config.benchmark == "synthetic":
    art = bench.artifacts["data"]
  else:
    if not config.kb:
      raise ValueError(f"benchmark {config.benchmark!r} needs `kb` (knowledge-base files)")
    from kard_jax.retrieval import ingest  # pylint: disable=import-outside-toplevel

    inputs = {f"kb_{i}": store.source(p) for i, p in enumerate(config.kb)}
    settings = ingest.IngestConfig(window=config.kb_window)

    def make(out):
      stats = ingest.ingest(list(config.kb), os.path.join(out, "kb", "passages.jsonl"),
                            config.kb_format, settings)
      return stats.to_json()

    art = store.run(bench.stage("kb"), make, inputs=inputs,
                    config={"format": config.kb_format, "window": config.kb_window})
    bench.publish(art, {"kb/passages.jsonl": "kb/passages.jsonl"})
  bench.artifacts["kb"] = art
  return art


# ----------------------------------------------------------------------------- teacher

_TEACH_FIELDS = {"file": "import_file"}  # config key -> TeacherJob field where the names differ


def _teacher_job(spec: Mapping[str, Any], **fields: Any):
  """The `TeacherJob` of a pipeline teacher spec (its keys are `kard teach`'s flag names; `file`
  is --import_file; None values keep the default)."""
  from kard_jax.teacher.collect import TeacherJob  # pylint: disable=import-outside-toplevel

  known = {f.name for f in dataclasses.fields(TeacherJob)}
  settings = {}
  for key, value in sorted(spec.items()):
    if key == "source" or value is None:
      continue
    name = _TEACH_FIELDS.get(key, key)
    if name not in known:
      raise ValueError(f"teacher setting {key!r} is not a `kard teach` flag")
    settings[name] = value
  return TeacherJob(**{**settings, **fields})


def teacher(store: Store, bench: Bench, config: PipelineConfig) -> Artifact:
  """rationales/train.jsonl: through `teacher.collect` (the synthetic oracle, a rationale file
  keyed by example id, or an endpoint), or, for files keyed by question (`qid` / `question` /
  `rationale` / `teacher_answer`, like ../shared/data/rationales/), `kard_jax.data.rationale_import`
  (lines without a qid are matched by question text). Either way filtered by the gold answer."""
  spec = dict(config.teacher)
  source = spec.get("source", "offline")
  if source not in ("offline", "import", "endpoint", "rationale_file"):
    raise ValueError("teacher source must be offline, import, rationale_file or endpoint, not "
                     f"{source!r}")
  inputs = {"data": bench.artifacts["data"]}
  if source in ("import", "rationale_file"):
    if not spec.get("file"):
      raise ValueError(f"a {source!r} teacher needs {{'file': ...}}")
    inputs["teacher_file"] = store.source(spec["file"])
  fixed = {"offline": True} if source == "offline" else {}
  if config.max_rationales is not None:
    fixed["max_per_example"] = config.max_rationales

  def make(out):
    from kard_jax.teacher import collect  # pylint: disable=import-outside-toplevel

    dest = os.path.join(out, "rationales", "train.jsonl")
    if source == "rationale_file":
      return _import_rationale_file(spec["file"], bench, config, dest)
    ws = bench.workspace(out, ("examples", "manifest.json"))
    where = {"data_dir": ws, "benchmark": config.benchmark, "out": dest}
    if source == "endpoint":
      where["journal"] = os.path.join(out, "journal.jsonl")
    summary, status = collect.collect(_teacher_job(spec, **where, **fixed))
    if status:
      raise RuntimeError(f"the teacher left {summary['samples_missing']} samples uncollected"
                         + (f" (last permanent error: {summary['last_permanent_error']})"
                            if summary.get("last_permanent_error") else "")
                         + "; rerun the pipeline to retry only those")
    return {"rationales": sum(1 for _ in jsonl.iter_jsonl(dest))}

  art = store.run(bench.stage("teacher"), make, inputs=inputs,
                  config={"teacher": spec, "max_rationales": config.max_rationales})
  bench.publish(art, {"rationales/train.jsonl": "rationales/train.jsonl"})
  bench.artifacts["teacher"] = art
  return art


def _import_rationale_file(path: str, bench: Bench, config: PipelineConfig,
                           dest: str) -> dict[str, int]:
  from kard_jax.data import answers, rationale, rationale_import, splits  # pylint: disable=import-outside-toplevel
  from kard_jax.data.example import read_examples  # pylint: disable=import-outside-toplevel

  # Lines are matched against the whole labelled set (a smoke run may keep a subset of it).
  every = {}
  if config.source is not None:
    for examples in splits.load_splits(config.benchmark, config.source).values():
      every.update({ex.id: ex for ex in examples})
  train = {ex.id: ex for ex in read_examples(bench.files["examples/train.jsonl"])}
  every.update(train)
  imported = rationale_import.import_rationales(path, every)
  kept = answers.filter_rationales(imported, train, config.max_rationales)
  rationale.write_rationales(dest, kept)
  return {"imported": len(imported), "rationales": len(kept),
          "questions": len({r.id for r in kept})}


def teacher_predictions(store: Store, bench: Bench, config: PipelineConfig) -> Artifact | None:
  """The few-shot teacher's stored answers on the evaluation split, as a predictions file."""
  if not config.teacher_predictions:
    return None
  from kard_jax.data.example import read_examples  # pylint: disable=import-outside-toplevel

  split = config.eval_split
  inputs = {"data": bench.artifacts["data"]}
  if config.teacher_predictions != "oracle":
    inputs["predictions"] = store.source(config.teacher_predictions)

  def make(out):
    examples = read_examples(os.path.join(bench.view, "examples", f"{split}.jsonl"))
    if config.teacher_predictions == "oracle":
      rows = [{"id": ex.id, "prediction": _oracle_statement(ex)} for ex in examples]
    else:
      rows = _stored_predictions(config.teacher_predictions, examples)
    jsonl.write_jsonl(os.path.join(out, "teacher_predictions.jsonl"), rows)
    return {"predictions": len(rows)}

  art = store.run(bench.stage("teacher_predictions"), make, inputs=inputs,
                  config={"split": split, "source": config.teacher_predictions})
  bench.artifacts["teacher_predictions"] = art
  return art


def _oracle_statement(example) -> str:
  """The synthetic world's chain of facts for an example, ending with its answer."""
  chain = example.extra.get("chain") or []
  facts = " ".join(f"{a} -> {b}." for a, b in zip(chain, chain[1:]))
  return f"{facts} So, the answer is {example.answer}.".strip()


def _stored_predictions(path: str, examples) -> list[dict[str, str]]:
  wanted = {ex.id for ex in examples}
  rows = []
  for line, obj in jsonl.iter_jsonl(path):
    example_id = obj.get("id", obj.get("qid"))
    text = next((obj[k] for k in ("prediction", "rationale", "answer") if k in obj), None)
    if example_id is None or text is None:
      raise InputError(path, "a teacher prediction needs 'id' and 'prediction' (or "
                       "'rationale' / 'answer')", line)
    if str(example_id) in wanted:
      rows.append({"id": str(example_id), "prediction": str(text)})
  missing = wanted - {r["id"] for r in rows}
  if missing:
    raise InputError(path, f"no teacher prediction for {len(missing)} evaluation examples "
                     f"(e.g. {sorted(missing)[0]!r})")
  return rows


# ----------------------------------------------------------------------------- vocabulary


def vocabulary(store: Store, bench: Bench, config: PipelineConfig) -> Artifact:
  """spiece.model: trained on the benchmark's text, or a given one (Flan-T5's)."""
  if config.vocab_file:
    art = store.source(config.vocab_file, "vocab")
    bench.files["spiece.model"] = art.path
    layout.assemble(bench.view, bench.files)
  else:
    from kard_jax.data import vocab as vocab_lib  # pylint: disable=import-outside-toplevel

    inputs = {k: bench.artifacts[k] for k in ("data", "kb", "teacher")}

    def make(out):
      ws = bench.workspace(out, ("examples", "kb", "rationales"))
      path = vocab_lib.train_benchmark_vocab(ws, config.vocab_size,
                                             os.path.join(out, "spiece.model"))
      import sentencepiece as spm  # pylint: disable=import-outside-toplevel
      return {"pieces": spm.SentencePieceProcessor(model_file=path).get_piece_size()}

    art = store.run(bench.stage("vocab"), make, inputs=inputs,
                    config={"vocab_size": config.vocab_size})
    bench.publish(art, {"spiece.model": "spiece.model"})
  bench.artifacts["vocab"] = art
  return art


def vocab_pieces(bench: Bench, extra_ids: int = 0) -> int:
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel

  return spm.SentencePieceProcessor(model_file=bench.files["spiece.model"]).get_piece_size() \
      + extra_ids


# ----------------------------------------------------------------------------- retrieval


def index(store: Store, bench: Bench, config: PipelineConfig) -> Artifact:
  """The BM25 index of kb/passages.jsonl (Lucene's k1, b by default)."""
  from kard_jax.retrieval import bm25_index  # pylint: disable=import-outside-toplevel
  from kard_jax.retrieval.passages import read_passages  # pylint: disable=import-outside-toplevel

  settings = bm25_index.BM25Config(k1=config.bm25_k1, b=config.bm25_b)
  kb_path = bench.files["kb/passages.jsonl"]

  def make(out):
    idx = bm25_index.build_index(read_passages(kb_path), os.path.join(out, "index"), settings,
                                 workers=0, source=kb_path)
    summary = {"passages": len(idx)}
    idx.close()
    return summary

  art = store.run(bench.stage("index"), make, inputs={"kb": bench.artifacts["kb"]},
                  config={"bm25": settings.to_json()})
  bench.files["index"] = art.file("index")
  bench.artifacts["index"] = art
  return art


def retrieval(store: Store, bench: Bench, config: PipelineConfig) -> Artifact:
  """retrieval/rationale_train.jsonl and retrieval/question_{validation,test}.jsonl."""
  from kard_jax.data.example import read_examples  # pylint: disable=import-outside-toplevel
  from kard_jax.retrieval import bm25_index, retrieval_file, retrieve  # pylint: disable=import-outside-toplevel

  eval_splits = _eval_splits(config)

  def make(out):
    idx = bm25_index.load_index(bench.files["index"])
    try:
      rationales = training_queries(bench, config)
      records = retrieve.retrieve_rationales(idx, rationales, k=config.rationale_k)
      counts = {"rationale_train": retrieval_file.write_retrieval_file(
          os.path.join(out, "retrieval", "rationale_train.jsonl"), records)}
      for split in eval_splits:
        examples = read_examples(bench.files[f"examples/{split}.jsonl"])
        records = retrieve.retrieve_questions(idx, examples, k=config.num_candidates)
        counts[f"question_{split}"] = retrieval_file.write_retrieval_file(
            os.path.join(out, "retrieval", f"question_{split}.jsonl"), records)
    finally:
      idx.close()
    return counts

  art = store.run(bench.stage("retrieval"), make,
                  inputs={k: bench.artifacts[k] for k in ("data", "teacher", "index")},
                  config={"rationale_k": config.rationale_k, "candidates": config.num_candidates,
                          "splits": eval_splits,
                          **({"rationale_query": config.rationale_query}
                             if config.rationale_query != "rationale" else {})})
  bench.publish(art, {f"retrieval/{n}": f"retrieval/{n}" for n in
                      ["rationale_train.jsonl"] + [f"question_{s}.jsonl" for s in eval_splits]})
  bench.artifacts["retrieval"] = art
  return art


def _eval_splits(config: PipelineConfig) -> list[str]:
  return sorted({"validation", config.eval_split})


def reranker_gin(config: PipelineConfig) -> str:
  """The reranker's gin file (`config.reranker_gin`, default gin_dir/reranker.gin)."""
  return config.reranker_gin or os.path.join(config.gin_directory, "reranker.gin")


def reranker(store: Store, bench: Bench, config: PipelineConfig, train_config: Any) -> Artifact:
  """Trains the reranker and writes retrieval/reranked_{split}.jsonl.

  `train_config` is the `reranker.stage.TrainConfig` read from `reranker_gin(config)` and
  `config.reranker_bindings` once, before any stage ran (`runner.run`); the stage's key hashes
  that gin file and those bindings.
  """
  inputs = {k: bench.artifacts[k] for k in ("data", "kb", "teacher", "index")}
  inputs["gin"] = store.source(reranker_gin(config), "gin")
  eval_splits = _eval_splits(config)

  def make(out):
    from kard_jax.reranker import stage  # pylint: disable=import-outside-toplevel

    ws = bench.workspace(out, ("examples", "kb", "rationales", "index"))
    if config.rationale_query != "rationale":
      _reranker_queries(bench, config, out, ws)
    # Passage encodings are cached by encoder and corpus fingerprints, so one cache serves every
    # run and variant (it is not part of this stage's content).
    paths = stage.RunPaths(data_dir=ws, index_dir=bench.files["index"],
                           model_dir=os.path.join(out, "model"),
                           cache_dir=os.path.join(store.root, "cache", "reranker"))
    stage.train(train_config, paths)
    stage.apply(paths, stage.ApplyConfig(splits=tuple(eval_splits), top_n=config.num_candidates,
                                         top_k=max(config.num_passages, 10)))
    return {"splits": eval_splits}

  settings = {"bindings": list(config.reranker_bindings), "candidates": config.num_candidates,
              "splits": eval_splits}
  if config.rationale_query != "rationale":
    settings["rationale_query"] = config.rationale_query
  art = store.run(bench.stage("reranker"), make, inputs=inputs, config=settings)
  bench.publish(art, {f"retrieval/reranked_{s}.jsonl": f"data/retrieval/reranked_{s}.jsonl"
                      for s in eval_splits})
  bench.artifacts["reranker"] = art
  return art


def training_queries(bench: Bench, config: PipelineConfig):
  """The teacher's rationales as KARD's training queries (`config.rationale_query`): as they are,
  or with their text replaced by the question, or by the question followed by the rationale."""
  from kard_jax.data.example import read_examples  # pylint: disable=import-outside-toplevel
  from kard_jax.data.rationale import read_rationales  # pylint: disable=import-outside-toplevel

  rationales = read_rationales(bench.files["rationales/train.jsonl"])
  if config.rationale_query == "rationale":
    return rationales
  questions = {ex.id: ex.question for ex in read_examples(bench.files["examples/train.jsonl"])}
  return [dataclasses.replace(r, rationale=questions.get(r.id, "") + (
      f" {r.rationale}" if config.rationale_query == "question+rationale" else ""))
          for r in rationales]


def _reranker_queries(bench: Bench, config: PipelineConfig, out: str, ws: str) -> None:
  """The reranker imitates BM25 under the same query KARD's training passages came from
  (`rationale_query`): its workspace's rationales are replaced by those queries."""
  from kard_jax.data.rationale import write_rationales  # pylint: disable=import-outside-toplevel

  rows = training_queries(bench, config)
  path = os.path.join(out, "queries", "train.jsonl")
  write_rationales(path, rows)
  link = os.path.join(ws, "rationales", "train.jsonl")
  os.remove(link)
  os.symlink(os.path.abspath(path), link)


def read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


StageFn = Callable[[Store, Bench, PipelineConfig], Artifact]
