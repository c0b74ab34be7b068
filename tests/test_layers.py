"""The package's layers, read from its imports: numerics never reach up into the command line,
the pipeline or the report, and nothing but the command line imports the pipeline."""

import ast
import os

from tests.conftest import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "kard_jax")
NUMERICS = ("data", "models", "retrieval", "teacher", "training", "decoding", "reranker", "serve")
UPPER = ("cli", "pipeline", "report", "interop")


def _imports(path: str) -> set[str]:
  """Every kard_jax module `path` imports, at any depth of the file (lazy imports included)."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      found.add(node.module)
      found.update(f"{node.module}.{alias.name}" for alias in node.names)
  return {name for name in found if name.startswith("kard_jax.")}


def _modules(package: str):
  for root, _, files in os.walk(os.path.join(PACKAGE, package)):
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(root, name)
        yield os.path.relpath(path, REPO_ROOT), _imports(path)


def _reaches(imported: set[str], packages) -> list[str]:
  return sorted(n for n in imported if n.split(".")[1] in packages)


def test_numerics_import_no_command_line_pipeline_or_report():
  offending = {path: _reaches(found, UPPER)
               for package in NUMERICS for path, found in _modules(package)}
  assert {p: v for p, v in offending.items() if v} == {}


def test_only_the_command_line_imports_the_pipeline():
  offending = {path: _reaches(found, ("pipeline",))
               for package in (*NUMERICS, "report", "interop") for path, found in _modules(package)}
  assert {p: v for p, v in offending.items() if v} == {}


def test_report_and_interop_import_no_command_line():
  offending = {path: _reaches(found, ("cli",))
               for package in ("report", "interop", "pipeline") for path, found in _modules(package)}
  assert {p: v for p, v in offending.items() if v} == {}


def test_the_checker_sees_lazy_imports(tmp_path):
  source = tmp_path / "m.py"
  source.write_text("def f():\n  from kard_jax.cli import main\n  import kard_jax.report.stamp\n")
  assert _reaches(_imports(str(source)), UPPER) == [
      "kard_jax.cli", "kard_jax.cli.main", "kard_jax.report.stamp"]
