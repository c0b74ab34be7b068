import json

from kard_jax.pipeline import readme


def test_readme_tables_match_results_files():
  """Every table in README.md is exactly what its results/*.json renders to."""
  assert readme.main(["--check"]) == 0


def test_regenerate_replaces_only_marked_blocks(tmp_path):
  (tmp_path / "results").mkdir()
  (tmp_path / "results" / "bench_x.json").write_text(json.dumps(
      {"command": "python bench/x.py", "machine": "2-core CPU", "figures": {"ratio": 2.5, "n": 3}}))
  text = "intro\n<!-- table: results/bench_x.json -->\nstale\n<!-- /table -->\noutro\n"
  out = readme.regenerate(text, str(tmp_path))
  assert out.startswith("intro\n<!-- table: results/bench_x.json -->\n| figure | value |")
  assert "| ratio | 2.5 |" in out and "| n | 3 |" in out and "stale" not in out
  assert out.endswith("<!-- /table -->\noutro\n")
  assert readme.regenerate(out, str(tmp_path)) == out  # idempotent
