"""Every committed results/*.json says who measured it, how, where and under which load."""

import json
import pathlib

import pytest

from kard_jax.report import stamp

RESULTS = sorted((pathlib.Path(__file__).resolve().parents[2] / "results").glob("*.json"))


def test_there_are_results_files():
  assert len(RESULTS) >= 4, RESULTS


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_results_file_is_stamped(path):
  obj = json.loads(path.read_text(encoding="utf-8"))
  missing = stamp.missing_stamp_fields(obj)
  assert missing == [], f"{path.name} lacks stamp fields {missing}: re-run the program that wrote it"
