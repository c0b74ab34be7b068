"""`kard plan`: compile-only memory and FLOP check of the real train step and decoder."""

import json

import pytest

from kard_jax.cli import main as cli
from kard_jax.report import readme
from kard_jax.report import stamp
from kard_jax.training import plan

SHAPES = ["--batch", "8", "--inputs", "32", "--targets", "16"]


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory):
  out = tmp_path_factory.mktemp("plan")
  argv = ["plan", "--model", "t5_tiny", "--mesh", "2,2", "--devices", "4", "--hbm_gb", "1",
          "--peak_tflops", "100", *SHAPES, "--name", "tiny", "--out_dir", str(out)]
  assert cli.main(argv) == 0
  return json.loads((out / "plan_tiny.json").read_text())


def test_tiny_plan_compiles_and_its_flops_agree_with_6nt(tiny_plan):
  assert stamp.missing_stamp_fields(tiny_plan) == []
  (row,) = tiny_plan["results"]
  assert row["mesh"] == [2, 2] and row["devices"] == 4 and row["scan_layers"]
  # The per-device program's FLOPs times the devices against 6·N·tokens (N per stack).
  ratio = row["train_flops_per_step"] / row["six_n_tokens_flops"]
  assert 0.8 < ratio < 1.2, ratio
  mem = row["train_memory_gib"]
  assert mem["arguments"] > 0 and mem["temporaries"] > 0
  assert mem["peak"] == pytest.approx(mem["arguments"] + mem["outputs"] - mem["aliased"]
                                      + mem["temporaries"], abs=2e-3)
  assert row["decode_memory_gib"]["peak"] > 0
  assert row["fits"] and row["peak_gib"] < 1e9 / 1024 ** 3
  expected = row["train_flops_per_step"] / (4 * 100e12 * plan.DEFAULT_MFU)
  assert row["step_s"] == pytest.approx(expected)


def test_sharding_the_model_axis_splits_the_parameters(tiny_plan, tmp_path):
  argv = ["plan", "--model", "t5_tiny", "--mesh", "4,1", "--hbm_gb", "1", "--no_decoder",
          *SHAPES, "--name", "dp", "--out_dir", str(tmp_path)]
  assert cli.main(argv) == 0
  (dp,) = json.loads((tmp_path / "plan_dp.json").read_text())["results"]
  (mp,) = tiny_plan["results"]
  # Replicated parameters (4x1) take more memory per device than those split over model=2.
  assert dp["train_memory_gib"]["arguments"] > 1.5 * mp["train_memory_gib"]["arguments"]
  assert dp["train_flops_per_step"] == pytest.approx(mp["train_flops_per_step"], rel=0.2)


@pytest.mark.parametrize("flags,message", [
    (["--model", "t5_huge", "--mesh", "2,2", "--hbm_gb", "1"], "--model 't5_huge'"),
    (["--mesh", "2x2", "--hbm_gb", "1"], "--mesh '2x2'"),
    (["--mesh", "2,2"], "--hbm_gb"),
    (["--mesh", "2,2", "--hbm_gb", "1", "--devices", "8"], "--devices 8"),
    (["--preset", "tpu_v9"], "--preset 'tpu_v9'"),
    ([], "exactly one of --mesh or --preset"),
    (["--mesh", "2,2", "--hbm_gb", "1", "--mfu", "2"], "--mfu"),
])
def test_bad_flags_are_one_line_errors(capsys, flags, message):
  assert cli.main(["plan", *flags]) == 2
  err = capsys.readouterr().err.strip()
  assert message in err and "\n" not in err and "Traceback" not in err


def test_readme_table_renders_a_preset_sweep():
  row = {"model": "t5_xl", "mesh": [2, 2], "devices": 4, "remat": "full", "hbm_gib": 32.0,
         "train_memory_gib": {"arguments": 5.0, "outputs": 5.0, "temporaries": 9.0,
                              "aliased": 5.0, "peak": 14.0},
         "decode_memory_gib": {"peak": 3.5}, "train_flops_per_step": 2.0e15,
         "six_n_tokens_flops": 1.5e15, "step_s": 4.5, "fits": True}
  results = {"shapes": {"batch": 32, "inputs": 512, "targets": 256}, "mfu": 0.4,
             "accelerators": plan.ACCELERATORS, "memory_note": "CPU-compiled",
             "results": [{"preset": "tpu_v4_8", "accelerator": "tpu_v4", "devices": 4,
                          "model": "t5_xl", "chosen": row, "tried": [row]},
                         {"preset": "tpu_v5e_8", "accelerator": "tpu_v5e", "devices": 8,
                          "model": "t5_xl", "chosen": None, "tried": []}],
             "stamp": {"command": "kard plan --preset all", "wall_s": 600}}
  table = plan.render(results)
  assert "| t5_xl | tpu_v4_8 | 4 | 32.0 | 2 x 2 | full | 14.00 | 5.00 | 3.5 | 2000.0 | 4.500 | 0.75 |" in table
  assert "| t5_xl | tpu_v5e_8 | 8 | 16.0 | nothing tried fits" in table
  assert "cloud.google.com/tpu/docs/v4" in table and "kard plan --preset all" in table
  assert readme._renderer("plan_flan_t5.json") is plan.render
