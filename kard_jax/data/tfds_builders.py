"""The benchmarks as TensorFlow Datasets builders, so TPU jobs read prepared TFRecords.

The official files cannot be downloaded for the user (licences, mirrors), so each builder reads
them from `manual_dir` through the same loaders and split rules as `kard data prepare`:

  import tensorflow_datasets as tfds
  from kard_jax.data import tfds_builders
  builder = tfds_builders.KardObqa(data_dir="/data/tfds")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir="/path/to/OpenBookQA/Data/Main"))
  ds = builder.as_dataset(split="validation")

Each record: id, question, choices {label: [..], text: [..]}, answer (a label) and extra (the
example's extra fields as a JSON string). Names carry a `kard_` prefix because TFDS's catalogue
already has unrelated `arc` and `openbookqa` datasets.
"""

from __future__ import annotations

import json
from typing import Iterator, Sequence

import tensorflow_datasets as tfds

from kard_jax.data import splits
from kard_jax.data.example import Example

_SPLITS = {"train": tfds.Split.TRAIN, "validation": tfds.Split.VALIDATION,
           "test": tfds.Split.TEST}


def _expected(benchmark: str) -> str:
  files = "\n".join(f"  {split}: {' or '.join(names)}"
                    for split, names in splits.SOURCE_FILES[benchmark].items())
  return f"Put the official files in one directory and pass it as `manual_dir`:\n{files}\n"


def example_features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "id": tfds.features.Text(),
      "question": tfds.features.Text(),
      "choices": tfds.features.Sequence({"label": tfds.features.Text(),
                                         "text": tfds.features.Text()}),
      "answer": tfds.features.Text(),
      "extra": tfds.features.Text(),
  })


def to_record(ex: Example) -> dict:
  return {"id": ex.id, "question": ex.question,
          "choices": [{"label": c.label, "text": c.text} for c in ex.choices],
          "answer": ex.answer, "extra": json.dumps(dict(ex.extra), ensure_ascii=False,
                                                   sort_keys=True)}


class _Benchmark(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared body: subclasses set `name`, BENCHMARK, the instructions and a description."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Normalised multiple-choice examples (kard_jax loaders)."}
  BENCHMARK = ""
  DESCRIPTION = ""
  HOMEPAGE = ""

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=self.DESCRIPTION, features=example_features(), homepage=self.HOMEPAGE,
        supervised_keys=None)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    loaded = splits.load_splits(self.BENCHMARK, dl_manager.manual_dir)
    return {_SPLITS[s]: self._generate_examples(examples) for s, examples in loaded.items()}

  def _generate_examples(self, examples: Sequence[Example]) -> Iterator[tuple[str, dict]]:
    for ex in examples:
      yield ex.id, to_record(ex)


class KardMedqa(_Benchmark):
  name = "kard_medqa"
  BENCHMARK = "medqa"
  DESCRIPTION = "MedQA-USMLE multiple-choice medical licensing questions."
  HOMEPAGE = "https://github.com/jind11/MedQA"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download MedQA (data_clean/questions/US/4_options/ of the release linked from the "
      "homepage). " + _expected("medqa"))


class KardStrategyqa(_Benchmark):
  name = "kard_strategyqa"
  BENCHMARK = "strategyqa"
  DESCRIPTION = ("StrategyQA yes/no questions (A yes, B no). The official test set is unlabelled: "
                 "validation and test are the same seeded 10% of strategyqa_train.json "
                 "(kard_jax.data.splits).")
  HOMEPAGE = "https://allenai.org/data/strategyqa"
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Download StrategyQA from the homepage. " + _expected(
      "strategyqa")


class KardObqa(_Benchmark):
  name = "kard_obqa"
  BENCHMARK = "obqa"
  DESCRIPTION = "OpenBookQA elementary science questions; extra.fact1 is the open-book fact."
  HOMEPAGE = "https://allenai.org/data/open-book-qa"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download OpenBookQA (Data/Main, or Data/Additional for the *_complete files with fact1). "
      + _expected("obqa"))


class KardArcEasy(_Benchmark):
  name = "kard_arc_easy"
  BENCHMARK = "arc_easy"
  DESCRIPTION = "ARC-Easy science questions; labels renumbered to A.. (originals in extra)."
  HOMEPAGE = "https://allenai.org/data/arc"
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Download ARC (ARC-V1-Feb2018/ARC-Easy). " + _expected(
      "arc_easy")


class KardArcChallenge(_Benchmark):
  name = "kard_arc_challenge"
  BENCHMARK = "arc_challenge"
  DESCRIPTION = "ARC-Challenge science questions; labels renumbered to A.. (originals in extra)."
  HOMEPAGE = "https://allenai.org/data/arc"
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Download ARC (ARC-V1-Feb2018/ARC-Challenge). " + _expected(
      "arc_challenge")


BUILDERS = {b.BENCHMARK: b for b in (KardMedqa, KardStrategyqa, KardObqa, KardArcEasy,
                                      KardArcChallenge)}
