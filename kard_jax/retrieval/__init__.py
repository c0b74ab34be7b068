"""kard_jax.retrieval: knowledge bases, BM25 indexes, KARD's retrieval modes and their metrics.

  ingest.py          knowledge-base files (jsonl, tsv, one fact per line) -> passages
  passages.py        the Passage, kb/passages.jsonl, random access to an index's passages
  tokenizer.py       bm25s-compatible tokenisation, parallel over chunks
  bm25_index.py      build_index / load_index / BM25Index (bm25s's on-disk format + manifest)
  sharded_index.py   an index in shards with corpus-wide statistics: the same top-k, less memory
  scoring.py         batched multi-threaded top-k and exact candidate re-scoring
  retrieve.py        question-as-query candidates and rationale-as-query passages
  rescore.py         BM25(rationale, candidate): the reranker's training target
  retrieval_file.py  the retrieval file format the SeqIO tasks and the reranker read
  gold.py, metrics.py   gold evidence, recall@k (tables: kard_jax/report/retrieval_tables.py)
Modules import lazily what they need, so importing this package stays cheap.
"""
