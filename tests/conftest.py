"""Test-wide setup: 8 host CPU devices (so mesh tests run anywhere) and paths to shared data."""

import os
import pathlib
import tempfile

# Must happen before JAX is imported anywhere in the test process.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Commands without a run directory log there, not under ~/.cache.
os.environ.setdefault("KARD_LOG_DIR", os.path.join(tempfile.gettempdir(), "kard-test-logs"))

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The real benchmark files beside the repository; their absence is a setup error, not a skip."""
  assert SHARED_DATA.is_dir(), f"expected the shared benchmark data at {SHARED_DATA}"
  return SHARED_DATA
