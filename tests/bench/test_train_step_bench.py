"""bench/train_step.py in its tiny configuration writes a stamped, like-for-like results file."""

from tests.bench.run_tiny import run_tiny


def test_train_step_bench_writes_its_results(tmp_path, capsys):
  obj = run_tiny("train_step", tmp_path, capsys)
  f = obj["figures"]
  assert obj["headline"]["ratio"] == f["ratio"]
  assert abs(f["ratio"] - f["tokens_per_s"] / f["reference_tokens_per_s"]) < 1e-3 * f["ratio"]
  assert obj["headline"]["fraction_of_limit"] == f["fraction_of_measured_matmul"]
  assert f["ours_compile_s"] > 0 and f["reference_first_step_s"] > 0
  threads = obj["stamp"]["threads"]
  assert threads["ours"] == threads["reference"]  # same cores on both sides
  assert set(obj["stamp"]["versions"]) >= {"jax", "optax", "torch", "transformers"}
