"""The prepared-benchmark directory that SeqIO tasks and commands read, assembled from stage outputs.

Stages write into their own content-addressed directories (see `stages`), but the tasks in
`tasks/` and every `kard` command expect one directory per benchmark in the shared layout:

  DATA/<name>/examples/{split}.jsonl   kb/passages.jsonl   rationales/train.jsonl
  DATA/<name>/retrieval/{rationale_train,question_{split},reranked_{split}}.jsonl
  DATA/<name>/rationales/scicot_{split}.jsonl   spiece.model

`assemble` builds it as symbolic links to the stage files it should show, replacing links that
point elsewhere, so the directory always shows exactly the current run's files and costs no
copies. Under the default work directory this is `work_dir/data/<benchmark>`, where `import
tasks` (and therefore T5X) finds it.
"""

from __future__ import annotations

import os
from typing import Mapping


def _link(target: str, link: str) -> None:
  target = os.path.abspath(target)
  if os.path.islink(link):
    if os.readlink(link) == target:
      return
    os.unlink(link)
  elif os.path.exists(link):
    raise FileExistsError(f"{link} exists and is not a link made by the pipeline")
  os.makedirs(os.path.dirname(link), exist_ok=True)
  tmp = f"{link}.tmp{os.getpid()}"
  if os.path.lexists(tmp):
    os.unlink(tmp)
  os.symlink(target, tmp)
  os.replace(tmp, link)


def assemble(data_dir: str, files: Mapping[str, str]) -> str:
  """Links each `files[relative path] = target` under `data_dir`; returns data_dir (absolute)."""
  data_dir = os.path.abspath(data_dir)
  for rel, target in sorted(files.items()):
    if not os.path.exists(target):
      raise FileNotFoundError(f"stage output {target} is missing (for {rel})")
    _link(target, os.path.join(data_dir, rel))
  return data_dir


def files_under(directory: str, prefix: str = "") -> dict[str, str]:
  """{prefix + relative path: absolute path} for the regular files under `directory`."""
  out = {}
  for root, dirs, names in os.walk(directory):
    dirs.sort()
    for name in sorted(names):
      full = os.path.join(root, name)
      if name == "DONE.json" or os.path.islink(full):
        continue
      out[os.path.join(prefix, os.path.relpath(full, directory))] = full
  return out
