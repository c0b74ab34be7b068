"""bench/decode.py in its tiny configuration writes a stamped, like-for-like results file."""

from tests.bench.run_tiny import run_tiny


def test_decode_bench_writes_its_results(tmp_path, capsys):
  obj = run_tiny("decode", tmp_path, capsys, "--threads", "0", "--repeats", "1")
  f = obj["figures"]
  assert obj["headline"]["ratio"] == f["greedy_ratio"]
  assert obj["headline"]["fraction_of_limit"] == f["greedy_step_fraction_of_bandwidth"]
  assert f["greedy_token_agreement"] == 1.0  # the same model on both sides
  for name in ("greedy", "sampling"):  # batched headline ratio, per-question as its own figure
    assert f[f"{name}_ratio"] > 0 and f[f"{name}_ratio_vs_per_question"] > 0
    assert f[f"ours_compile_s_{name}"] > 0 and f[f"reference_first_call_s_{name}"] > 0
  assert obj["limits"]["bandwidth_bytes_per_s"] > 0 and obj["limits"]["matmul_flops_per_s"] > 0
  assert set(obj["stamp"]["versions"]) >= {"jax", "torch", "transformers"}
