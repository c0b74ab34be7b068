"""SeqIO's offline cache of our tasks, written by Apache Beam's DirectRunner, read by training.

The module fixture runs README's DirectRunner command (`python -m seqio.scripts.cache_tasks_main
--module_import=tasks ...`, a subprocess, as a user runs it) on a miniature synthetic benchmark
found through $KARD_DATA_DIR, then this process registers the same benchmark. The tests check the
cache against the uncached path: per split the same count and the same examples (inputs, targets
and the pass-through fields); the training input pipeline reading the cache gives, epoch for
epoch, the same batch rows (cache_tasks_main globally reshuffles examples before writing shards,
so the order differs; the cached stream is deterministic and resumable in its own order).
"""

import collections
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import seqio

import tasks
from kard_jax.data import vocab
from kard_jax.data.errors import InputError
from kard_jax.data.synthetic import SyntheticConfig, write_benchmark
from kard_jax.training import input_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASK = tasks.task_name("synthetic", "reasoning")  # several rationales per question: id + sample
SPLITS = ("train", "validation", "test")
LENGTHS = {"inputs": 64, "targets": 64}  # longer than every miniature example: nothing trimmed
DIRECT_RUNNER = ("--runner=DirectRunner,--direct_num_workers=1,"
                 "--direct_running_mode=in_memory")


def cache_command(cache_dir, task_names):
  """README's DirectRunner command (`--min_shards=1`: the miniature task fits one shard)."""
  return [sys.executable, "-m", "seqio.scripts.cache_tasks_main", "--module_import=tasks",
          f"--tasks={','.join(task_names)}", f"--output_cache_dir={cache_dir}", "--min_shards=1",
          f"--pipeline_options={DIRECT_RUNNER}"]


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
  data = tmp_path_factory.mktemp("data")
  bench = data / "synthetic"
  write_benchmark(SyntheticConfig(num_entities=20, num_validation=4, num_test=4, seed=2), bench)
  vocab.train_benchmark_vocab(bench, 300)
  cache = tmp_path_factory.mktemp("seqio_cache")
  env = {k: v for k, v in os.environ.items() if not k.startswith("KARD_")}  # default vocab etc.
  env.update(KARD_DATA_DIR=str(data),
             PYTHONPATH=os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  proc = subprocess.run(cache_command(cache, [TASK]), env=env, cwd=REPO, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  saved_dirs = list(seqio.get_global_cache_dirs())
  tasks.register_benchmark("synthetic", bench)  # the names the subprocess cached
  yield bench, cache
  seqio.set_global_cache_dirs(saved_dirs)
  tasks.register_all()  # back to the import-time registrations


def _rows(split, use_cached):
  ds = seqio.get_mixture_or_task(TASK).get_dataset(LENGTHS, split=split, shuffle=False,
                                                   use_cached=use_cached)
  return list(ds.as_numpy_iterator())


def _keyed(rows):
  return {(r["id"], int(r["sample"])): r for r in rows}


def test_cache_tasks_main_writes_every_split_with_the_uncached_count(cached):
  _, cache = cached
  task_dir = cache / TASK
  assert (task_dir / "COMPLETED").exists()
  input_pipeline.check_cached(TASK, [str(cache)])
  assert seqio.get_mixture_or_task(TASK).cache_dir == str(task_dir)
  for split in SPLITS:
    count = len(_rows(split, use_cached=False))
    assert count > 0
    assert seqio.get_mixture_or_task(TASK).get_cached_stats(split)["examples"] == count, split


def test_cached_task_has_the_uncached_examples_and_reads_only_the_cache(cached):
  bench, cache = cached
  input_pipeline.check_cached(TASK, [str(cache)])
  uncached = {split: _rows(split, use_cached=False) for split in SPLITS}
  moved = bench.with_name("synthetic_moved")
  bench.rename(moved)  # the cached path must not need the source files
  try:
    with pytest.raises(InputError, match="file not found"):
      _rows("train", use_cached=False)
    cached_rows = {split: _rows(split, use_cached=True) for split in SPLITS}
  finally:
    moved.rename(bench)
  assert len(uncached["train"]) > len({r["id"] for r in uncached["train"]})  # several samples
  for split in SPLITS:
    want, got = _keyed(uncached[split]), _keyed(cached_rows[split])
    assert len(got) == len(cached_rows[split]) == len(uncached[split]) == len(want), split
    assert got.keys() == want.keys(), split
    for key, row in want.items():
      assert set(got[key]) == set(row), key
      for name, value in row.items():
        assert np.array_equal(got[key][name], value), (split, key, name)
      assert row["targets"][-1] == 1  # EOS, appended after the cache (post-cache step)


def _pipeline(use_cached, cache, *, training, shuffle=False, pack=False, batch_size=4):
  cfg = input_pipeline.DatasetConfig(TASK, LENGTHS, batch_size=batch_size, shuffle=shuffle,
                                     pack=pack, use_cached=use_cached,
                                     cache_dirs=(str(cache),) if use_cached else ())
  return cfg.make_input(seqio.EncDecFeatureConverter, seqio.ShardInfo(0, 1), training=training,
                        seed=3)


def _row_counts(batches):
  """Multiset of the batches' non-padding rows (encoder input, decoder target)."""
  return collections.Counter(
      (b["encoder_input_tokens"][i].tobytes(), b["decoder_target_tokens"][i].tobytes())
      for b in batches for i in range(len(b["encoder_input_tokens"]))
      if b["decoder_target_tokens"][i].any())


def test_training_input_reads_the_cache_with_the_uncached_batches(cached):
  _, cache = cached
  count = len(_rows("train", use_cached=False))
  # One evaluation pass: every example once, same rows.
  plain = list(_pipeline(False, cache, training=False).batches())
  from_cache = list(_pipeline(True, cache, training=False).batches())
  assert len(from_cache) == len(plain) == -(-count // 4)
  epoch = _row_counts(plain)
  assert sum(epoch.values()) == count
  assert _row_counts(from_cache) == epoch
  # The endless training stream: `count` batches of 4 are exactly 4 epochs on both paths.
  plain = list(itertools.islice(_pipeline(False, cache, training=True).batches(), count))
  from_cache = list(itertools.islice(_pipeline(True, cache, training=True).batches(), count))
  assert _row_counts(plain) == _row_counts(from_cache) == {k: 4 * v for k, v in epoch.items()}
  # Shuffled and packed (the training default): deterministic and resumable from the cache.
  first = list(itertools.islice(_pipeline(True, cache, training=True, shuffle=True,
                                          pack=True).batches(), 6))
  again = _pipeline(True, cache, training=True, shuffle=True, pack=True)
  resumed = list(itertools.islice(again.batches(start=2), 4))
  for a, b in zip(first[2:], resumed, strict=True):
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_use_cached_for_a_task_without_a_cache_is_a_clear_error(cached):
  _, cache = cached
  other = tasks.task_name("synthetic", "answer_only")
  cfg = input_pipeline.DatasetConfig(other, LENGTHS, use_cached=True, cache_dirs=(str(cache),))
  with pytest.raises(ValueError, match=f"{other}.*not cached.*cache_tasks_main"):
    cfg.make_input(seqio.EncDecFeatureConverter, seqio.ShardInfo(0, 1), training=True, seed=0)
