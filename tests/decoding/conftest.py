"""Fixtures shared by the decoding tests."""

import pytest

from tests.decoding.chain_model import write_chain_run


@pytest.fixture(scope="session")
def chain_run(tmp_path_factory):
  """(data root, model_dir) of the known-output student (see chain_model.py)."""
  return write_chain_run(tmp_path_factory.mktemp("chain"))
