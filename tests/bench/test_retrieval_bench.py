"""bench/retrieval.py in its tiny configuration writes a stamped, like-for-like results file."""

from tests.bench.run_tiny import run_tiny


def test_retrieval_bench_writes_its_results(tmp_path, capsys):
  obj = run_tiny("retrieval", tmp_path, capsys, "--workers", "1")
  f = obj["figures"]
  # The headline is single-threaded on both sides; the multi-threaded figure stands apart.
  assert obj["headline"]["ratio"] == f["qps_ratio_vs_rank_bm25"]
  assert abs(f["qps_ratio_vs_rank_bm25"]
             - f["qps_small_ours_1_thread"] / f["qps_small_rank_bm25"]) < 1e-3 * f[
                 "qps_ratio_vs_rank_bm25"]
  assert obj["stamp"]["threads"]["ours (headline)"] == obj["stamp"]["threads"]["rank_bm25"] == 1
  assert obj["headline"]["fraction_of_limit"] == f["fraction_of_bandwidth_1_thread"]
  assert f["top_k_overlap_with_rank_bm25"] > 0.5
  assert obj["stamp"]["versions"]["rank-bm25"] == "0.2.2"
