import json

import pytest

from kard_jax.report import readme


def test_readme_tables_match_results_files():
  """Every table in README.md is exactly what its results/*.json renders to."""
  assert readme.main(["--check"]) == 0


def test_regenerate_replaces_only_marked_blocks(tmp_path):
  (tmp_path / "results").mkdir()
  stamp = {"command": "python bench/x.py", "commit": "a" * 40, "dirty": False,
           "versions": {"python": "3.11.7", "jax": "0.1"},
           "device": {"cpu": {"cpu_model": "Test CPU", "logical_cores": 2}},
           "load_avg_1m": {"before": 0.5, "after": 1.25}, "wall_s": 12.0,
           "written_utc": "2026-01-01T00:00:00+00:00", "threads": {"ours": 1, "reference": 1}}
  (tmp_path / "results" / "bench_x.json").write_text(json.dumps(
      {"stamp": stamp, "bench": "x", "setup": "a 2-core CPU",
       "headline": {"ratio": 2.5, "ratio_is": "ours over theirs", "fraction_of_limit": 0.25,
                    "limit_is": "of the bandwidth bound"},
       "figures": {"ratio": 2.5, "n": 3}, "about": {"ratio": "ours / theirs", "n": "a count"}}))
  text = "intro\n<!-- table: results/bench_x.json -->\nstale\n<!-- /table -->\noutro\n"
  out = readme.regenerate(text, str(tmp_path))
  assert out.startswith("intro\n<!-- table: results/bench_x.json -->\nLike for like (ours over "
                        "theirs): **2.5x**. Distance to the physical limit (of the bandwidth "
                        "bound): **25.0%**.")
  assert "| ratio | 2.5 | ours / theirs |" in out and "| n | 3 | a count |" in out
  assert "stale" not in out
  assert ("Measured by `python bench/x.py` at commit `aaaaaaaaaaaa` (2026-01-01T00:00:00+00:00) "
          "on Test CPU (2 logical cores); threads: ours 1, reference 1; 1-minute load average "
          "0.5 before, 1.25 after; wall time 12 s; python 3.11.7, jax 0.1.") in out
  assert out.endswith("<!-- /table -->\noutro\n")
  assert readme.regenerate(out, str(tmp_path)) == out  # idempotent
  assert "--tiny" not in out
  obj = json.loads((tmp_path / "results" / "bench_x.json").read_text())
  obj["stamp"]["command"] = "python bench/x.py --tiny"
  (tmp_path / "results" / "bench_x.json").write_text(json.dumps(obj))
  tiny = readme.regenerate(out, str(tmp_path))
  assert "from the seconds-long `--tiny` test configuration" in tiny
  assert "run `./run.sh bench x` for the real benchmark" in tiny


def test_an_unstamped_bench_file_is_refused(tmp_path):
  (tmp_path / "results").mkdir()
  (tmp_path / "results" / "bench_x.json").write_text(json.dumps(
      {"command": "python bench/x.py", "figures": {"ratio": 2.5}}))
  text = "<!-- table: results/bench_x.json -->\n<!-- /table -->\n"
  with pytest.raises(ValueError, match="stamp"):
    readme.regenerate(text, str(tmp_path))
