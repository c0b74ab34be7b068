"""bench/retrieval_scale.py end to end at --tiny size: a stamped results file, figures per size,
and a projection labelled as one."""

import importlib.util
import json
import subprocess
import sys

import pytest

from kard_jax.report.stamp import missing_stamp_fields
from kard_jax.report import retrieval_scale_tables as scale_report
from tests.conftest import REPO_ROOT


def _bench_module():
  spec = importlib.util.spec_from_file_location("retrieval_scale",
                                                REPO_ROOT / "bench" / "retrieval_scale.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_projection_is_linear_in_passages():
  bench = _bench_module()
  small = {"passages": 1_000, "build_s": 10.0, "peak_rss_gb": 1.0, "index_gb_total": 0.5,
           "index_gb_matrices": 0.2, "qps": 1000.0, "qps_1_thread": 500.0}
  large = {"passages": 2_000, "build_s": 20.0, "peak_rss_gb": 1.5, "index_gb_total": 1.0,
           "index_gb_matrices": 0.4, "qps": 500.0, "qps_1_thread": 250.0}
  p = bench.project(small, large, 4_000)
  assert (p["build_s"], p["peak_rss_gb"], p["index_gb_total"]) == (40.0, 2.5, 2.0)
  assert p["qps"] == pytest.approx(1 / (0.002 + 2 * 0.001)) and "projection" in p["method"]
  noisy = dict(large, qps=2000.0)  # the larger index timed faster: no projection, not a guess
  assert bench.project(small, noisy, 4_000)["qps"] is None


def test_tiny_run_writes_stamped_results(tmp_path):
  out = tmp_path / "scale.json"
  work = tmp_path / "not" / "yet"  # a missing --work_dir is created
  proc = subprocess.run([sys.executable, "bench/retrieval_scale.py", "--tiny", "--out", str(out),
                         "--work_dir", str(work)], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  last = json.loads(proc.stdout.strip().splitlines()[-1])
  written = json.loads(out.read_text())
  assert missing_stamp_fields(written) == []
  assert "retrieval_scale.py --tiny" in written["stamp"]["command"]
  small, large = written["measured"]
  assert (small["passages"], small["shards"]) == (2_000, 1)
  assert (large["passages"], large["shards"]) == (6_000, 3)
  for run in (small, large):
    assert run["k"] == 100 and run["queries"] == 100
    assert run["build_s"] > 0 and run["qps"] > 0 and run["qps_1_thread"] > 0
    assert 0.01 < run["peak_rss_gb"] < 4
    assert 0 < run["index_gb_matrices"] < run["index_gb_total"]
  assert large["postings"] > 2 * small["postings"]
  assert written["projection"]["passages"] == 100_000
  assert "not a measurement" in written["projection"]["method"]
  assert last["passages"] == 6_000 and last["qps"] == large["qps"]
  assert last["load_avg_1m"] == written["stamp"]["load_avg_1m"]
  assert work.is_dir() and list(work.iterdir()) == []  # the temporary corpus is gone
  table = scale_report.render(written)  # what the README shows
  assert "`--tiny` test configuration" in table
  assert "| 6,000 | 3 |" in table and "| 100,000 (projection) |" in table
  assert f"{large['qps']:,.0f}" in table.split("| 6,000 | 3 |")[1].splitlines()[0]
  assert written["stamp"]["commit"][:12] in table


def test_a_work_dir_that_cannot_be_made_is_a_one_line_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  proc = subprocess.run([sys.executable, "bench/retrieval_scale.py", "--tiny",
                         "--work_dir", str(blocker / "sub")], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert f"--work_dir {blocker / 'sub'}: cannot create it" in proc.stderr.splitlines()[-1]
