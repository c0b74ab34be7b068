"""`kard retrieval` end to end on a small synthetic benchmark."""

import json

import pytest

from kard_jax.data.synthetic import SyntheticConfig, write_benchmark
from kard_jax.cli.main import main
from kard_jax.report import stamp
from kard_jax.retrieval.retrieval_file import read_retrieval_file


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
  root = tmp_path_factory.mktemp("retrieval_cli")
  data = root / "synthetic"
  write_benchmark(SyntheticConfig(num_entities=40, num_validation=10, num_test=20), data)
  return root, data


def _last_json(capsys):
  return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_build_retrieve_and_evaluate(bench, capsys):
  root, data = bench
  idx = root / "index"
  passages = data / "kb" / "passages.jsonl"
  assert main(["retrieval", "build", "--kb", str(passages), "--out", str(idx), "--workers", "0",
               "--passages_out", str(root / "ingested.jsonl")]) == 0
  built = _last_json(capsys)
  assert built["passages"] > 0 and built["settings"]["k1"] == 0.9
  assert (root / "ingested.jsonl").read_text().count("\n") == built["passages"]

  assert main(["retrieval", "retrieve", "--index", str(idx), "--data_dir", str(data),
               "--query", "question", "--split", "test", "--k", "20"]) == 0
  out = _last_json(capsys)["out"]
  assert out.endswith("retrieval/question_test.jsonl")
  records = read_retrieval_file(out)
  assert len(records) == 20 and all(r.sample is None and 0 < len(r.passages) <= 20
                                    for r in records)
  assert max(len(r.passages) for r in records) == 20

  assert main(["retrieval", "retrieve", "--index", str(idx), "--data_dir", str(data),
               "--query", "rationale", "--k1", "0.9"]) == 0
  records = read_retrieval_file(_last_json(capsys)["out"])
  assert records and all(r.query == "rationale" and r.sample is not None for r in records)

  results = root / "recall.json"
  gold = str(data / "examples" / "train.jsonl")
  assert main(["retrieval", "evaluate", "--index", str(idx), "--gold_format", "examples",
               "--gold", gold, "--rationales", str(data / "rationales" / "train.jsonl"),
               "--k", "1,5", "--benchmark", "synthetic", "--split", "train",
               "--out", str(results)]) == 0
  rows = _last_json(capsys)["rows"]
  assert [r["query"] for r in rows] == ["question", "rationale"]
  # The synthetic teacher names its facts, so rationales find the gold passages more often.
  assert rows[1]["recall@5"] > rows[0]["recall@5"] and rows[1]["recall@5"] > 0.5
  saved = json.loads(results.read_text())
  assert saved["command"].startswith("kard retrieval evaluate --index") and saved["rows"] == rows
  assert main(["retrieval", "evaluate", "--index", str(idx), "--gold_format", "examples",
               "--gold", str(data / "examples" / "test.jsonl"), "--benchmark", "synthetic",
               "--split", "test", "--out", str(results), "--append"]) == 0
  saved = json.loads(results.read_text())
  assert len(saved["rows"]) == 3 and saved["command"].count(" && ") == 1
  # Stamped: the chained command, both parts with their own provenance, wall time summed.
  assert stamp.missing_stamp_fields(saved) == []
  assert saved["stamp"]["command"] == saved["command"]
  assert [p["command"] for p in saved["stamp"]["parts"]] == saved["command"].split(" && ")
  assert saved["stamp"]["wall_s"] == pytest.approx(
      sum(p["wall_s"] for p in saved["stamp"]["parts"]), abs=2e-3)
  assert "bm25s" in saved["stamp"]["versions"]


def test_mismatched_settings_and_bad_input_exit_2(bench, tmp_path, capsys):
  root, data = bench
  idx = root / "index2"
  assert main(["retrieval", "build", "--kb", str(data / "kb" / "passages.jsonl"),
               "--out", str(idx), "--workers", "0"]) == 0
  capsys.readouterr()
  assert main(["retrieval", "retrieve", "--index", str(idx), "--data_dir", str(data),
               "--query", "question", "--k1", "1.5"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "k1=0.9 (requested 1.5)" in err
  bad = tmp_path / "kb.jsonl"
  bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b"}\n')
  assert main(["retrieval", "build", "--kb", str(bad), "--out", str(tmp_path / "i")]) == 2
  assert f"{bad}:2:" in capsys.readouterr().err
  assert main(["retrieval", "retrieve", "--index", str(tmp_path), "--data_dir", str(data),
               "--query", "question"]) == 2
  assert "not a BM25 index" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["build", "retrieve", "evaluate", "ingest"])
def test_help(action, capsys):
  with pytest.raises(SystemExit) as e:
    main(["retrieval", action, "--help"])
  assert e.value.code == 0
  assert "--k1" in capsys.readouterr().out or action == "ingest"
