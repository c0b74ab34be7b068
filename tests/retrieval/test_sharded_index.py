"""A sharded BM25 index (global statistics, merged top-k) answers exactly as one big index."""

import json
import os
import random
import shutil

import numpy as np
import pytest

from kard_jax.data.errors import InputError
from kard_jax.cli import main as cli
from kard_jax.retrieval import sharded_index
from kard_jax.retrieval.bm25_index import build_index, load_index
from kard_jax.retrieval.passages import write_passages
from tests.retrieval.conftest import make_passages

N = 3000  # make_passages adds two odd passages: 3002, so three shards of 1001


@pytest.fixture(scope="module")
def corpus():
  return make_passages(N, seed=7)


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus):
  tmp = tmp_path_factory.mktemp("sharded")
  # chunk_size does not divide shard_size: chunks must still end at every shard boundary.
  whole = build_index(corpus, tmp / "whole", chunk_size=370, show_progress=False)
  sharded = sharded_index.build_sharded_index(corpus, tmp / "sharded", shard_size=1001,
                                              chunk_size=370, show_progress=False)
  yield whole, sharded, tmp
  whole.close()
  sharded.close()


@pytest.fixture(scope="module")
def queries(corpus):
  rng = random.Random(3)
  out = [" ".join(rng.sample(p.text.rstrip(".").split(), min(3, len(p.text.split()))))
         for p in rng.sample(corpus, 150)]
  return out + ["swimming castles near ancient harbors", "zzz unknown words only", "the of",
                "Naïve café 東京"]


def test_three_shards_give_the_unsharded_top_k_ids_and_scores(built, queries):
  whole, sharded, _ = built
  assert [s["num_passages"] for s in sharded.manifest["shards"]] == [1001, 1001, 1000]
  assert len(sharded) == len(whole) == N + 2
  assert sharded.manifest["avg_doc_len"] == whole.manifest["avg_doc_len"]
  assert sharded.manifest["vocab_size"] == whole.manifest["vocab_size"]
  assert sharded.manifest["nnz"] == whole.manifest["nnz"]
  assert sharded.manifest["corpus_sha256"] == whole.manifest["corpus_sha256"]
  ties = 0
  for k in (1, 10, 100):
    want = whole.search(queries, k, n_threads=1)
    got = sharded.search(queries, k, n_threads=2, batch_size=16)
    assert len(want) == len(got) == len(queries)
    for q, ((wp, ws), (gp, gs)) in enumerate(zip(want, got)):
      assert [whole.passages[p].id for p in wp] == [sharded.passages[p].id for p in gp], (k, q)
      np.testing.assert_array_equal(gs, ws, err_msg=f"k={k} query {q}")
      ties += int(len(ws) > 1 and np.any(ws[1:] == ws[:-1]))
  assert ties > 10  # the tie order (position ascending) is exercised, not just distinct scores
  # Hits span every shard.
  hit_shards = {int(np.searchsorted(sharded.firsts, p, side="right")) - 1
                for p, _ in sharded.search(queries, 100) for p in p.tolist()}
  assert hit_shards == {0, 1, 2}


def test_rescoring_candidates_matches_the_unsharded_index(built, queries):
  whole, sharded, _ = built
  rng = np.random.default_rng(0)
  for query in queries[:20]:
    positions = rng.choice(N + 2, size=50, replace=False)
    np.testing.assert_array_equal(sharded.score(query, positions), whole.score(query, positions))


def test_per_shard_statistics_would_not_match(built, corpus, tmp_path, queries):
  """Why the first pass exists: a shard indexed on its own scores its passages differently."""
  whole, _, _ = built
  alone = build_index(corpus[:1001], tmp_path / "alone", show_progress=False)
  positions = np.arange(1001)
  differs = sum(not np.array_equal(alone.score(q, positions), whole.score(q, positions))
                for q in queries[:20])
  alone.close()
  assert differs >= 15


def test_passages_by_position_and_id(built, corpus):
  _, sharded, _ = built
  for i in (0, 1000, 1001, 2001, 2002, N + 1):
    assert sharded.passages[i] == corpus[i]
    assert sharded.passages.position(corpus[i].id) == i
  with pytest.raises(KeyError):
    sharded.passages.position("nope")
  with pytest.raises(IndexError):
    sharded.passages[N + 2]


def test_load_index_opens_either_kind_and_checks_files(built, tmp_path):
  _, sharded, tmp = built
  again = load_index(tmp / "sharded", verify=True)
  assert isinstance(again, sharded_index.ShardedBM25Index)
  again.close()
  copy = tmp_path / "copy"
  shutil.copytree(tmp / "sharded", copy)
  with open(copy / "shard_00001" / "data.npy", "ab") as f:
    f.write(b"x")
  with pytest.raises(InputError, match="shard_00001/data.npy.*truncated or modified"):
    load_index(copy)
  shutil.rmtree(copy)
  shutil.copytree(tmp / "sharded", copy)
  os.remove(copy / "shard_00002" / "indices.npy")
  with pytest.raises(InputError, match="index file missing"):
    load_index(copy)


def test_duplicate_ids_across_shards_are_an_error(corpus, tmp_path):
  with pytest.raises(InputError, match="duplicate passage id 'p0'"):
    sharded_index.build_sharded_index(corpus[:5] + corpus[:1], tmp_path / "dup", shard_size=5,
                                      show_progress=False)
  assert not os.path.exists(tmp_path / "dup")


def test_cli_build_with_shard_size(corpus, tmp_path, capsys):
  kb = tmp_path / "kb.jsonl"
  write_passages(kb, corpus[:500])
  out = tmp_path / "index"
  common = ["retrieval", "build", "--kb", str(kb), "--no_dedupe", "--workers", "0"]
  assert cli.main(common + ["--out", str(out), "--shard_size", "200"]) == 0
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert summary["num_shards"] == 3
  assert cli.main(common + ["--out", str(tmp_path / "whole")]) == 0
  assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["num_shards"] == 1
  index = load_index(out)
  assert [s["num_passages"] for s in index.manifest["shards"]] == [200, 200, 100]
  whole = load_index(tmp_path / "whole")
  (wp, ws), = whole.search(["ancient castle harbor"], 20)
  (gp, gs), = index.search(["ancient castle harbor"], 20)
  assert np.array_equal(wp, gp) and np.array_equal(ws, gs) and len(ws) == 20
  capsys.readouterr()
  with pytest.raises(SystemExit) as stopped:
    cli.main(["retrieval", "build", "--kb", str(kb), "--out", str(out), "--shard_size", "0"])
  assert stopped.value.code == 2
  err = capsys.readouterr().err
  assert "--shard_size" in err and "must be an integer >= 1, got '0'" in err
  assert len(err.strip().splitlines()) == 1
