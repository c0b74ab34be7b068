"""The KARD passage reranker: question -> BM25 top-N -> reranked top-k.

  scorer     the networks: late interaction (ColBERT's MaxSim over BERT) and a cross-encoder
  model      the trainer's model around a scorer: KL to rationale-BM25, temperature schedules,
             KARD's top-1/3/5, and the optimizer
  data       what the scorer reads: candidate lists and targets, passage token tables (cached on
             disk), the trainer's batches
  stage      a run: its config, assembling and restoring it, and train / evaluate / apply
  inference  a trained scorer reranking candidate lists (passage vectors computed once)
  metrics    recall@k of gold evidence and KARD's accuracy, beside the BM25 baselines
"""
