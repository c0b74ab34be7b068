"""The teacher stage calls `teacher.collect` with a typed job: what it writes is what `kard teach`
writes from the same data and settings, and a job that cannot run fails with its own message."""

from __future__ import annotations

import os

import pytest

from kard_jax.cli import main as cli
from kard_jax.pipeline import benchmark_stages as bs
from kard_jax.pipeline.config import PipelineConfig
from kard_jax.pipeline.stages import Store
from kard_jax.teacher.collect import TeacherConfigError

SYNTHETIC = {"num_entities": 12, "num_validation": 4, "num_test": 4,
             "rationales_per_question": 3, "train_questions_per_entity": 1}


def _prepared(tmp_path, teacher, max_rationales=None):
  config = PipelineConfig(benchmark="synthetic", synthetic=SYNTHETIC, teacher=teacher,
                          max_rationales=max_rationales)
  store = Store(str(tmp_path / "work"), log=lambda msg: None)
  bench = bs.Bench("synthetic", "synthetic", os.path.join(store.root, "data", "synthetic"))
  bs.data(store, bench, config)
  return store, bench, config


def test_offline_teacher_stage_writes_what_kard_teach_writes(tmp_path):
  store, bench, config = _prepared(tmp_path, {"source": "offline", "give_answer": True},
                                   max_rationales=2)
  art = bs.teacher(store, bench, config)
  staged = open(art.file("rationales/train.jsonl"), encoding="utf-8").read()

  out = tmp_path / "cli.jsonl"
  assert cli.main(["teach", "--data_dir", bench.view, "--offline", "--max_per_example", "2",
                   "--out", str(out), "--no_progress"]) == 0
  assert staged and staged == out.read_text(encoding="utf-8")
  assert store.summary(art)["rationales"] == len(staged.splitlines())


def test_teacher_stage_raises_the_jobs_own_error(tmp_path):
  store, bench, config = _prepared(tmp_path, {"source": "endpoint", "n": 2})
  with pytest.raises(TeacherConfigError, match="--base_url and --model are required"):
    bs.teacher(store, bench, config)


def test_teacher_spec_with_an_unknown_setting_is_refused(tmp_path):
  store, bench, config = _prepared(tmp_path, {"source": "offline", "temprature": 0.3})
  with pytest.raises(ValueError, match="'temprature' is not a `kard teach` flag"):
    bs.teacher(store, bench, config)
