"""TFDS builders: prepare StrategyQA from the real official file and read it back."""

import json

import pytest
import tensorflow_datasets as tfds

from kard_jax.data import splits, tfds_builders
from kard_jax.data.errors import InputError
from kard_jax.data.example import Choice, Example


def _example(record) -> Example:
  text = lambda b: b.decode("utf-8")
  choices = tuple(Choice(text(l), text(t))
                  for l, t in zip(record["choices"]["label"], record["choices"]["text"]))
  return Example(text(record["id"]), text(record["question"]), choices, text(record["answer"]),
                 json.loads(text(record["extra"])))


def test_strategyqa_builder_round_trip(shared_data, tmp_path):
  manual_dir = shared_data / "strategyqa"
  builder = tfds_builders.KardStrategyqa(data_dir=tmp_path)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, compute_stats=tfds.download.ComputeStatsMode.SKIP))
  expected = splits.load_splits("strategyqa", manual_dir)
  assert {s: builder.info.splits[s].num_examples for s in splits.SPLITS} == {
      s: len(e) for s, e in expected.items()}
  got = {ex.id: ex for ex in map(_example, tfds.as_numpy(builder.as_dataset(split="validation")))}
  assert got == {ex.id: ex for ex in expected["validation"]}
  # tfds.load finds the registered builder by name in the same data_dir.
  train = tfds.load("kard_strategyqa", split="train", data_dir=tmp_path, download=False)
  ids = {r["id"].decode() for r in tfds.as_numpy(train)}
  assert ids == {ex.id for ex in expected["train"]}


def test_builders_name_their_manual_files(tmp_path):
  assert sorted(tfds_builders.BUILDERS) == sorted(splits.SOURCE_FILES)
  for benchmark, cls in tfds_builders.BUILDERS.items():
    assert cls.name == f"kard_{benchmark}" and cls.name in tfds.list_builders()
    for names in splits.SOURCE_FILES[benchmark].values():
      assert names[0] in cls.MANUAL_DOWNLOAD_INSTRUCTIONS
  builder = tfds_builders.KardArcEasy(data_dir=tmp_path / "data")
  (tmp_path / "wrong").mkdir()
  (tmp_path / "wrong" / "train.jsonl").write_text("{}\n")
  with pytest.raises(InputError, match="no arc_easy train file"):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=tmp_path / "wrong"))
