"""`kard serve`: a trained student behind an OpenAI-compatible HTTP API that shows its sources.

  questions.py  the user's text -> question and choices; the model input (the evaluation prompt)
  engine.py     the student, its vocabulary, the index (and reranker): question -> answer record;
                compiled batch x length buckets, recompilations counted
  batcher.py    dynamic batching: requests that arrive together decode together
  api.py        the OpenAI wire format: request validation, responses, stream chunks, errors
  server.py     the standard-library HTTP server: routes, server-sent events, cancellation
  page.py       the page at GET / (plain HTML and a few lines of script)
  rerank.py     the KARD reranker over a new question's BM25 candidates
  (its README table: kard_jax/report/serve_tables.py)
"""
