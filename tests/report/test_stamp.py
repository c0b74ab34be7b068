"""The provenance stamp and the atomic results writer."""

import json
import os

import pytest

from kard_jax.report import stamp


def test_written_results_carry_every_stamp_field(tmp_path):
  with stamp.Measurement(packages=("numpy",), argv=["bench/x.py", "--tiny"]) as m:
    total = sum(range(1000))
  path = tmp_path / "sub" / "bench_x.json"
  written = stamp.write_results(str(path), {"figures": {"total": total}}, m.stamp(threads={"ours": 1}))
  obj = json.loads(path.read_text())
  assert obj == written
  assert stamp.missing_stamp_fields(obj) == []
  assert obj["figures"] == {"total": 499500}
  assert obj["stamp"]["command"] == "bench/x.py --tiny"
  assert obj["stamp"]["threads"] == {"ours": 1}
  assert obj["stamp"]["versions"]["numpy"] != "not installed"
  assert obj["stamp"]["device"]["cpu"]["logical_cores"] == os.cpu_count()
  assert len(obj["stamp"]["commit"]) == 40
  assert obj["stamp"]["wall_s"] >= 0
  assert not list(path.parent.glob(".*.tmp"))


def test_missing_fields_are_named():
  assert stamp.missing_stamp_fields({"figures": {}}) == ["stamp"]
  assert stamp.missing_stamp_fields({"stamp": {"command": "x"}}) == [
      f for f in stamp.REQUIRED_FIELDS if f != "command"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
  path = tmp_path / "r.json"
  stamp.write_results(str(path), {"a": 1}, {"command": "c"})
  with pytest.raises(TypeError):
    stamp.write_results(str(path), {"a": object()}, {"command": "c"})
  assert json.loads(path.read_text())["a"] == 1
