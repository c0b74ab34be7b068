"""Runs a bench/*.py in its tiny configuration in this process and checks what it writes."""

import importlib.util
import json
import math
import pathlib

from kard_jax.report import bench as bench_lib
from kard_jax.report import stamp

BENCH_DIR = pathlib.Path(__file__).resolve().parents[2] / "bench"


def load_bench(name: str):
  spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run_tiny(name: str, tmp_path: pathlib.Path, capsys, *extra: str) -> dict:
  """Runs bench NAME with --tiny into tmp_path; checks the file and the last stdout line."""
  out = tmp_path / f"bench_{name}.json"
  argv = ["--tiny", "--out", str(out), *extra]
  assert load_bench(name).main(argv) == 0
  last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  obj = json.loads(out.read_text())

  assert stamp.missing_stamp_fields(obj) == []
  s = obj["stamp"]
  assert s["command"] == " ".join(["python", f"bench/{name}.py", *argv])
  assert len(s["commit"]) == 40 and isinstance(s["dirty"], bool)
  assert s["wall_s"] > 0 and s["device"]["cpu"]["logical_cores"] >= 1
  assert all(v != "not installed" for v in s["versions"].values()), s["versions"]
  assert s["threads"] and all(v for v in s["threads"].values())

  h = obj["headline"]
  assert last == {"bench": name, "ratio": h["ratio"], "fraction_of_limit": h["fraction_of_limit"],
                  "out": str(out)}
  for key in ("ratio", "fraction_of_limit"):
    assert isinstance(h[key], float) and math.isfinite(h[key]) and h[key] > 0, (key, h[key])
  assert obj["bench"] == name and obj["setup"]
  assert set(obj["figures"]) == set(obj["about"])
  assert all(isinstance(v, (int, float)) for v in obj["figures"].values()), obj["figures"]
  assert not list(tmp_path.glob(".*.tmp"))

  rendered = bench_lib.render(obj)  # what the README would show
  assert f"`{s['command']}`" in rendered and s["commit"][:12] in rendered
  assert s["device"]["cpu"]["cpu_model"] in rendered
  for key in obj["figures"]:
    assert f"| {key} |" in rendered
  return obj
