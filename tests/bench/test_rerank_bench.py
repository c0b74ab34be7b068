"""bench/rerank.py in its tiny configuration writes a stamped, like-for-like results file."""

from tests.bench.run_tiny import run_tiny


def test_rerank_bench_writes_its_results(tmp_path, capsys, shared_data):
  obj = run_tiny("rerank", tmp_path, capsys)
  f = obj["figures"]
  assert obj["headline"]["ratio"] == f["ratio"]
  assert obj["headline"]["fraction_of_limit"] == f["fraction_of_measured_matmul"]
  assert f["max_score_difference"] < 1e-2
  threads = obj["stamp"]["threads"]
  assert threads["ours"] == threads["reference"]
