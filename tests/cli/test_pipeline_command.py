"""`kard pipeline` on the command line: a stage run alone, and what --only leaves out."""

from __future__ import annotations

import json
import os

from kard_jax.cli import main as cli

CONFIG = """
from __gin__ import dynamic_registration
from kard_jax.pipeline import config
config.PipelineConfig:
  benchmark = 'synthetic'
  synthetic = {'num_entities': 12, 'num_validation': 4, 'num_test': 8}
  methods = ['answer_only']
  results_dir = %r
"""


def test_only_runs_the_named_stages_and_writes_no_partial_report(tmp_path, capsys):
  gin_file = tmp_path / "p.gin"
  gin_file.write_text(CONFIG % str(tmp_path / "results"))
  work = tmp_path / "work"
  argv = ["pipeline", "--config", str(gin_file), "--work_dir", str(work), "--no_compile_cache"]

  assert cli.main(argv + ["--only", "teacher"]) == 0  # its input (data) is missing
  assert not (work / "stages" / "synthetic" / "teacher").exists()

  assert cli.main(argv + ["--only", "data", "--only", "teacher"]) == 0
  for stage in ("data", "teacher"):
    (done,) = (work / "stages" / "synthetic" / stage).glob("*/DONE.json")
    assert json.loads(done.read_text())["stage"] == f"synthetic/{stage}"
  assert not (work / "stages" / "synthetic" / "vocab").exists()
  view = work / "data" / "synthetic"
  assert os.path.islink(view / "examples" / "test.jsonl")
  assert (view / "rationales" / "train.jsonl").read_text().count("\n") > 0
  assert not (tmp_path / "results").exists(), "a partial run writes no table"
  assert "no report written" in capsys.readouterr().err

  assert cli.main(argv + ["--only", "vocab"]) == 0
  err = capsys.readouterr().err
  assert "[synthetic/data] reused" in err and "[synthetic/teacher] reused" in err
  assert (view / "spiece.model").is_file() and not (work / "stages" / "synthetic" / "index").exists()


def test_a_stage_gin_error_stops_at_the_entry_with_one_line(tmp_path, capsys):
  """Every stage's gin files are read before any stage runs: a binding they refuse, or a
  missing gin file, ends the command at once (exit 2, one message, no stage run)."""
  cfg = tmp_path / "pipeline.gin"
  cfg.write_text(CONFIG % str(tmp_path / "results"))
  work = tmp_path / "work"
  code = cli.main(["pipeline", "--config", str(cfg), "--work_dir", str(work),
                   "--gin.PipelineConfig.train_bindings=['nonexistent.param = 1']"])
  err = capsys.readouterr().err
  assert code == 2
  assert "kard pipeline: reading the stages' gin files: No configurable matching 'nonexistent'" \
      in err and "Traceback" not in err
  assert not (work / "stages").exists()

  code = cli.main(["pipeline", "--config", str(cfg), "--work_dir", str(work),
                   "--gin.PipelineConfig.gin_dir='/nowhere'"])
  err = capsys.readouterr().err
  assert code == 2 and "/nowhere/answer_only.gin: gin file not found" in err
