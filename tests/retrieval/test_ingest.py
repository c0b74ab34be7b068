"""Knowledge-base ingestion: formats, splitting, duplicates, ids and bad input."""

import json

import pytest

from kard_jax.data.errors import InputError
from kard_jax.data.jsonl import read_jsonl
from kard_jax.retrieval.ingest import IngestConfig, IngestStats, ingest, iter_kb, split_words


def _write(path, text):
  path.write_text(text, encoding="utf-8")
  return str(path)


def _ingest(paths, **kwargs):
  stats = IngestStats()
  config = kwargs.pop("config", IngestConfig())
  return list(iter_kb(paths, config=config, stats=stats, show_progress=False, **kwargs)), stats


def test_jsonl_skips_empty_lines_and_keeps_unicode(tmp_path):
  f = _write(tmp_path / "kb.jsonl",
             '{"id": "a", "title": "Café", "text": "Naïve résumé über 東京"}\n\n   \n'
             '{"id": 7, "text": "second doc"}\n{"id": "e", "text": "   "}\n')
  got, stats = _ingest(f)
  assert [(p.id, p.title, p.text) for p in got] == [
      ("a", "Café", "Naïve résumé über 東京"), ("7", "", "second doc")]
  assert stats.empty == 1 and stats.documents == 2


def test_duplicates_same_id_same_text_dropped_different_text_rejected(tmp_path):
  f = _write(tmp_path / "kb.jsonl", '{"id": "a", "text": "x y"}\n{"id": "a", "text": "x  Y"}\n')
  got, stats = _ingest(f)
  assert [p.id for p in got] == ["a"] and stats.duplicates == 1
  bad = _write(tmp_path / "bad.jsonl", '{"id": "a", "text": "x"}\n\n{"id": "a", "text": "z"}\n')
  with pytest.raises(InputError) as e:
    _ingest(bad)
  assert e.value.line == 3 and "duplicate id 'a'" in e.value.message


def test_dedupe_of_same_text_under_different_ids_is_configurable(tmp_path):
  f = _write(tmp_path / "kb.jsonl",
             '{"id": "a", "text": "Same text"}\n{"id": "b", "text": "same   TEXT"}\n')
  assert [p.id for p in _ingest(f)[0]] == ["a"]
  assert [p.id for p in _ingest(f, config=IngestConfig(dedupe=False))[0]] == ["a", "b"]


def test_long_document_split_into_windows_with_stride(tmp_path):
  words = [f"w{i}" for i in range(25)]
  f = _write(tmp_path / "kb.jsonl",
             json.dumps({"id": "doc", "title": "T", "text": " ".join(words)}))
  got, stats = _ingest(f, config=IngestConfig(window=10, stride=5))
  assert [p.id for p in got] == [f"doc#{k}" for k in range(4)]
  assert got[0].text.split() == words[:10] and got[-1].text.split() == words[15:25]
  assert all(p.title == "T" for p in got) and stats.split_documents == 1
  assert split_words("a b c", 10, None) == ["a b c"]
  assert split_words(" ".join(words), 10, None)[-1].split() == words[20:]
  with pytest.raises(ValueError):
    IngestConfig(window=10, stride=11)


def test_tsv_with_and_without_header(tmp_path):
  dpr = _write(tmp_path / "psgs.tsv",
               'id\ttext\ttitle\n1\t"Aaron ( or ; ""Ahärôn"") is"\tAaron\n')
  got, _ = _ingest(dpr)
  assert [(p.id, p.title, p.text) for p in got] == [("1", "Aaron", 'Aaron ( or ; "Ahärôn") is')]
  plain = _write(tmp_path / "plain.tsv", "x1\tfirst text\nx2\tsecond text\tTitle\n")
  assert [(p.id, p.title) for p in _ingest(plain)[0]] == [("x1", ""), ("x2", "Title")]
  short = _write(tmp_path / "short.tsv", "x1\tok\nonly-one-column\n")
  with pytest.raises(InputError) as e:
    _ingest(short)
  assert e.value.line == 2


def test_lines_format_strips_quotes_and_gives_stable_content_ids(tmp_path):
  a = _write(tmp_path / "openbook.txt", '"A bee is a pollinating animal"\n\n"the sun is a star"\n')
  b = _write(tmp_path / "openbook2.txt", '"the sun is a star"\n"A bee is a pollinating animal"\n')
  got_a = {p.text: p.id for p in _ingest(a)[0]}
  got_b = {p.text: p.id for p in _ingest(b)[0]}
  assert set(got_a) == {"A bee is a pollinating animal", "the sun is a star"}
  assert all(v.startswith("openbook:") for v in got_a.values())
  assert [v.split(":")[1] for v in got_a.values()] == [got_b[t].split(":")[1] for t in got_a]


def test_bad_input_names_file_and_line(tmp_path):
  bad_json = _write(tmp_path / "kb.jsonl", '{"id": "a", "text": "ok"}\n{"id": "b", "text": \n')
  with pytest.raises(InputError) as e:
    _ingest(bad_json)
  assert e.value.line == 2 and e.value.path.endswith("kb.jsonl")
  no_text = _write(tmp_path / "t.jsonl", '{"id": "a", "body": "x"}\n')
  with pytest.raises(InputError, match="text"):
    _ingest(no_text)
  latin1 = tmp_path / "l.txt"
  latin1.write_bytes(b"fine\ncaf\xe9\n")
  with pytest.raises(InputError) as e:
    _ingest(str(latin1))
  assert e.value.line == 2
  with pytest.raises(InputError, match="format"):
    _ingest(_write(tmp_path / "kb.csv", "x"))
  with pytest.raises(InputError, match="not found"):
    _ingest(str(tmp_path / "missing.jsonl"))


def test_ingest_writes_passages_atomically_and_streams(tmp_path):
  f = _write(tmp_path / "kb.jsonl", "".join(json.dumps({"id": str(i), "text": f"doc {i}"}) + "\n"
                                           for i in range(5)))
  out = tmp_path / "kb" / "passages.jsonl"
  stats = ingest(f, out, show_progress=False)
  assert stats.passages == 5 and [o["id"] for o in read_jsonl(out)] == list("01234")
  stream = iter_kb(f, show_progress=False)
  assert next(stream).id == "0"  # a generator: nothing forces reading the whole file
  bad = _write(tmp_path / "bad.jsonl", '{"id": "a", "text": "x"}\nnot json\n')
  with pytest.raises(InputError):
    ingest(bad, out, show_progress=False)
  assert len(read_jsonl(out)) == 5  # the old file survives a failed run
