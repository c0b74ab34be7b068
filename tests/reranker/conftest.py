"""Session fixtures shared by the reranker tests (built once per test process)."""

import pytest

from tests.reranker import tiny


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
  """(benchmark dir, BM25 index) of the tiny synthetic benchmark."""
  data_dir = tiny.write_benchmark(str(tmp_path_factory.mktemp("data")))
  return data_dir, tiny.build_index(data_dir)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, tiny_data):
  """A random tiny BERT checkpoint folder covering the tiny benchmark's words."""
  return tiny.write_bert(str(tmp_path_factory.mktemp("bert")), tiny_data[0])
