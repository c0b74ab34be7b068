"""Every benchmark's gin files parse with gin (real configurables, includes resolved) and train
a registered task; every pipeline config builds a valid PipelineConfig whose method gins exist."""

from __future__ import annotations

import pathlib

import gin
import pytest

from kard_jax.pipeline import config as config_lib
from kard_jax.pipeline import methods as methods_lib
from kard_jax.pipeline.student_stages import gin_closure

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCHMARKS = ("synthetic", "strategyqa", "medqa", "obqa")
STUDENT_METHODS = [k for k in methods_lib.METHODS if k != "teacher"]


def _parse(files, bindings=()):
  from kard_jax.training import train as _train  # noqa: F401  (registers `train`)
  from kard_jax.cli.commands import rerank as _rerank  # noqa: F401
  gin.clear_config()
  gin.add_config_file_search_path(str(REPO_ROOT))
  gin.parse_config_files_and_bindings([str(f) for f in files], list(bindings),
                                      finalize_config=False)


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  gin.clear_config()


@pytest.mark.parametrize("benchmark", BENCHMARKS)
@pytest.mark.parametrize("method", STUDENT_METHODS)
def test_method_gin_parses_and_names_its_task(benchmark, method, monkeypatch, tmp_path):
  monkeypatch.setenv("KARD_DATA_DIR", str(tmp_path))
  import seqio
  import tasks  # noqa: F401  (registers every benchmark's tasks)

  path = REPO_ROOT / "gin_configs" / benchmark / f"{method}.gin"
  text = path.read_text()
  assert text.startswith("# ") and "kard train --gin_file=" in text.split("from __gin__")[0]
  _parse([path], ["MODEL_DIR = '/tmp/unused'"])
  task = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
  spec = methods_lib.get(method)
  owner = methods_lib.get(methods_lib.training_owner(method))
  assert task in (f"kard_{benchmark}_{spec.train_task}", f"kard_{benchmark}_{owner.train_task}")
  assert task in set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  lengths = gin.query_parameter("%TASK_FEATURE_LENGTHS")
  assert set(lengths) == {"inputs", "targets"}
  assert gin.query_parameter("%TRAIN_STEPS") > 0
  for f in gin_closure(str(path)):
    assert pathlib.Path(f).is_file()


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "gin_configs").glob("*/pipeline*.gin")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pipeline_configs_build(path):
  _parse([path])
  config = config_lib.PipelineConfig()
  assert config.benchmark == path.parent.name
  for method in config.methods:
    if method != "teacher":
      owner = methods_lib.training_owner(method)
      assert (REPO_ROOT / config_lib.method_gin(config, owner)).is_file()
  if "kard_rerank" in config.methods:
    reranker = config.reranker_gin or f"{config.gin_directory}/reranker.gin"
    _parse([REPO_ROOT / reranker], list(config.reranker_bindings))
    assert gin.query_parameter("%TRAIN_STEPS") > 0


def test_synthetic_methods_share_one_training_shape():
  """Methods without passages run one compiled train step (same lengths, steps and model)."""
  seen = set()
  for method in ("answer_only", "reasoning", "multitask", "scicot"):
    _parse([REPO_ROOT / "gin_configs" / "synthetic" / f"{method}.gin"])
    seen.add((repr(gin.query_parameter("%TASK_FEATURE_LENGTHS")),
              gin.query_parameter("%TRAIN_STEPS"), gin.query_parameter("%BATCH_SIZE")))
  assert len(seen) == 1
