"""Multi-process settings from flags and environment, and which input shard each host reads."""

import numpy as np
import pytest

from kard_jax.cli import main as cli
from kard_jax.training import partitioning
from kard_jax.training.partitioning import DistributedConfig, resolve_distributed

_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "KARD_COORDINATOR",
        "KARD_NUM_PROCESSES", "KARD_PROCESS_ID")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
  for name in _ENV:
    monkeypatch.delenv(name, raising=False)


def test_single_process_needs_no_initialisation():
  assert resolve_distributed(None) is None
  assert resolve_distributed(DistributedConfig(num_processes=1)) is None
  assert partitioning.maybe_initialize_distributed(None) is False


def test_flags_win_over_the_standard_environment_variables(monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "host0:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  monkeypatch.setenv("KARD_PROCESS_ID", "2")  # the older name loses to JAX's
  got = resolve_distributed(DistributedConfig(heartbeat_timeout_s=7))
  assert (got.coordinator_address, got.num_processes, got.process_id) == ("host0:1234", 4, 3)
  assert got.heartbeat_timeout_s == 7
  got = resolve_distributed(DistributedConfig(process_id=1, coordinator_address="h:9"))
  assert (got.coordinator_address, got.num_processes, got.process_id) == ("h:9", 4, 1)


def test_auto_detect_leaves_coordinates_to_jax():
  got = resolve_distributed(DistributedConfig(auto_detect=True))
  assert got is not None and got.auto_detect
  assert (got.coordinator_address, got.num_processes, got.process_id) == (None, None, None)


@pytest.mark.parametrize("config, message", [
    (DistributedConfig(num_processes=2, process_id=0), "no coordinator address"),
    (DistributedConfig(num_processes=2, coordinator_address="h:1"), "no process id"),
    (DistributedConfig(num_processes=2, process_id=2, coordinator_address="h:1"),
     r"process id 2 is outside \[0, 2\)"),
    (DistributedConfig(num_processes=2, process_id=0, coordinator_address="h"), "HOST:PORT"),
    (DistributedConfig(num_processes=2, process_id=0, coordinator_address="h:1",
                       heartbeat_timeout_s=0), "heartbeat_timeout_s must be positive"),
])
def test_incomplete_settings_are_clear_errors(config, message):
  with pytest.raises(ValueError, match=message):
    resolve_distributed(config)


def test_bad_environment_value_names_the_variable(monkeypatch):
  monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two' is not an integer"):
    resolve_distributed(None)


def test_kard_train_rejects_bad_distributed_flags_with_exit_2(capsys):
  code = cli.main(["train", "--gin_file=gin_configs/models/t5_tiny.gin", "--num_processes=2",
                   "--process_id=5", "--coordinator_address=localhost:1"])
  assert code == 2
  assert "process id 5 is outside [0, 2)" in capsys.readouterr().err


def test_shards_follow_the_batch_rows_each_process_holds():
  # (4, 2) mesh over 2 hosts x 4 devices, hosts split along data: one shard each.
  owners = np.array([[0, 0], [0, 0], [1, 1], [1, 1]])
  assert partitioning.shard_of_process(owners, 0, 0) == partitioning.seqio.ShardInfo(0, 2)
  assert partitioning.shard_of_process(owners, 0, 1) == partitioning.seqio.ShardInfo(1, 2)
  # The model axis spans the hosts: both hold every row, so both read the one shard.
  owners = np.array([[0, 1], [0, 1], [0, 1], [0, 1]])
  assert partitioning.shard_of_process(owners, 0, 1) == partitioning.seqio.ShardInfo(0, 1)
  # 4 hosts, pairs sharing rows: two shards.
  owners = np.array([[0, 1], [0, 1], [2, 3], [2, 3]])
  assert [partitioning.shard_of_process(owners, 0, p).index for p in range(4)] == [0, 0, 1, 1]
  with pytest.raises(ValueError, match="overlapping or unequal"):
    partitioning.shard_of_process(np.array([[0, 0], [0, 1], [1, 1], [1, 1]]), 0, 0)
