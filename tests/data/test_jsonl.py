import json
import os

import pytest

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError


def test_iter_jsonl_skips_blank_lines_and_numbers_lines(tmp_path):
  p = tmp_path / "a.jsonl"
  p.write_text('{"a": 1}\n\n  \n{"a": 2}\n', encoding="utf-8")
  assert list(jsonl.iter_jsonl(p)) == [(1, {"a": 1}), (4, {"a": 2})]


@pytest.mark.parametrize("text,line,fragment", [
    ('{"a": 1}\n{"a": \n', 2, "invalid JSON"),
    ('[1, 2]\n', 1, "expected a JSON object"),
])
def test_iter_jsonl_errors_name_file_and_line(tmp_path, text, line, fragment):
  p = tmp_path / "bad.jsonl"
  p.write_text(text, encoding="utf-8")
  with pytest.raises(InputError) as e:
    list(jsonl.iter_jsonl(p))
  assert e.value.line == line
  assert fragment in str(e.value) and str(p) in str(e.value)


def test_missing_file_is_input_error(tmp_path):
  with pytest.raises(InputError, match="file not found"):
    list(jsonl.iter_jsonl(tmp_path / "nope.jsonl"))


def test_atomic_open_keeps_old_file_on_failure(tmp_path):
  p = tmp_path / "out.jsonl"
  jsonl.write_jsonl(p, [{"x": 1}])
  with pytest.raises(RuntimeError):
    with jsonl.atomic_open(p) as f:
      f.write("partial")
      raise RuntimeError("crash mid-write")
  assert json.loads(p.read_text()) == {"x": 1}
  assert os.listdir(tmp_path) == ["out.jsonl"]  # no temporary left behind


def test_write_jsonl_round_trips_unicode(tmp_path):
  p = tmp_path / "u.jsonl"
  rows = [{"t": "Zürich — 東京"}, {"t": "ok"}]
  assert jsonl.write_jsonl(p, rows) == 2
  assert jsonl.read_jsonl(p) == rows
