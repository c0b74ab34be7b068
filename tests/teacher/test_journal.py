"""The call journal: durable appends, torn-tail repair, one writer at a time."""

import json

import pytest

from kard_jax.data.errors import InputError
from kard_jax.teacher.journal import Journal


def entry(example_id, sample, text="t", prompt_hash="h1"):
  return {"id": example_id, "prompt_hash": prompt_hash, "sample": sample, "text": text}


def test_entries_survive_reopening(tmp_path):
  path = tmp_path / "sub" / "journal.jsonl"
  with Journal(path) as j:
    assert j.append([entry("a", 0), entry("a", 1)]) == 2
    assert j.append([entry("a", 1, "again"), entry("b", 0)]) == 1  # a known key is not rewritten
    j.record_failure({"id": "c", "prompt_hash": "h1", "samples": [0], "failure": "http_400"})
  with Journal(path) as j:
    assert set(j.done("a", "h1")) == {0, 1} and j.done("a", "h1")[1]["text"] == "t"
    assert j.done("a", "other") == {} and j.done("c", "h1") == {}
    assert len(j) == 3 and len(j.failures) == 1 and j.duplicates == 0
    assert j.keys() == {("a", "h1", 0), ("a", "h1", 1), ("b", "h1", 0)}
  assert len(path.read_text().splitlines()) == 4


@pytest.mark.parametrize("tail", [b'{"id": "a", "prompt_hash": "h1", "sam', b'{"id": "a"\n',
                                  b"\xe2\x82"])
def test_torn_last_line_is_cut_off(tmp_path, tail, capsys):
  path = tmp_path / "journal.jsonl"
  with Journal(path) as j:
    j.append([entry("a", 0), entry("a", 1)])
  good = path.read_bytes()
  with open(path, "ab") as f:
    f.write(tail)
  with Journal(path) as j:
    assert j.repaired_bytes == len(tail)
    assert set(j.done("a", "h1")) == {0, 1}
    j.append([entry("a", 2)])
  assert "torn last line" in capsys.readouterr().err
  assert path.read_bytes() == good + (json.dumps(entry("a", 2)) + "\n").encode()


def test_corruption_before_the_end_is_an_error(tmp_path):
  path = tmp_path / "journal.jsonl"
  path.write_text(json.dumps(entry("a", 0)) + "\n{broken\n" + json.dumps(entry("a", 1)) + "\n")
  with pytest.raises(InputError) as e:
    Journal(path)
  assert e.value.line == 2


def test_one_writer_at_a_time(tmp_path):
  path = tmp_path / "journal.jsonl"
  with Journal(path):
    with pytest.raises(InputError, match="in use"):
      Journal(path)
  with Journal(path) as j:  # released on close
    assert len(j) == 0
