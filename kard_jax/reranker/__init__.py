"""The KARD passage reranker: question -> BM25 top-N -> reranked top-k.

  scorer     the networks: late interaction (ColBERT's MaxSim over BERT) and a cross-encoder
  model      the trainer's model around a scorer: KL to rationale-BM25, temperature schedules,
             KARD's top-1/3/5, and the optimizer
  data       what the scorer reads: candidate lists and targets, passage token tables (cached on
             disk), the trainer's batches
  stage      a run: its config, assembling and restoring it, and train / evaluate / apply
  inference  a trained scorer reranking candidate lists (passage vectors computed once)
  metrics    recall@k of gold evidence and KARD's accuracy, beside the BM25 baselines
  report     Markdown tables from the reranker's result files
"""

import sys
import types


class _LegacyGinModule(types.ModuleType):
  """`kard_jax.reranker.setup`, the module `stage` was called before the package was regrouped,
  resolved lazily to `stage`. Only for gin files that still import it: their bytes are part of
  finished pipeline stages' keys (gin_configs/synthetic/reranker.gin), so editing them would
  re-run those stages. New gin files import `kard_jax.reranker.stage`."""

  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    from kard_jax.reranker import stage  # pylint: disable=import-outside-toplevel
    return getattr(stage, name)


sys.modules.setdefault(__name__ + ".setup", _LegacyGinModule(__name__ + ".setup"))
