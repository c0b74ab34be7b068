"""Reranking throughput: our MiniLM late interaction (JAX) vs the same scoring in PyTorch.

Both sides score the same batch of real StrategyQA (question, candidate sentence) pairs with the
packaged all-MiniLM-L6-v2 and the same compressor weights, KARD's ColBERT computation: encode the
questions and the candidates, project every token, sum over question tokens of the best dot
product with a candidate token. The reference is `transformers.BertModel` + `torch.nn.Linear` +
KARD's MaxSim on CPU under `torch.inference_mode`. Scores are checked to agree before timing.

    python bench/rerank.py [--questions 8] [--candidates 16] [--repeats 5]

Also printed (not in the ratio): our throughput when the passage vectors are precomputed, as
`kard rerank apply` runs. The last line is {"pairs_per_s", "reference_pairs_per_s", "ratio"}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "..", "shared", "data", "strategyqa")


def _texts(num_questions: int, num_candidates: int):
  with open(os.path.join(DATA, "strategyqa_train.json"), encoding="utf-8") as f:
    questions = [q["question"] for q in json.load(f)[:num_questions]]
  with open(os.path.join(DATA, "wiki_sentence_kb.jsonl"), encoding="utf-8") as f:
    sentences = [json.loads(line)["text"] for _, line in zip(range(num_questions * num_candidates),
                                                              f)]
  return questions, sentences


def _timed(fns, repeats: int) -> list[float]:
  """Median seconds per call of each function, calls interleaved (ours, reference, ours, ...) so
  that both see the same machine load."""
  for fn in fns:
    fn()  # warm-up (compilation for JAX)
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, t in zip(fns, times):
      start = time.perf_counter()
      fn()
      t.append(time.perf_counter() - start)
  return [statistics.median(t) for t in times]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--questions", type=int, default=8)
  parser.add_argument("--candidates", type=int, default=16, help="candidates per question")
  parser.add_argument("--query_length", type=int, default=32)
  parser.add_argument("--passage_length", type=int, default=64)
  parser.add_argument("--compression_dim", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  import jax
  import torch
  import transformers

  from kard_jax.models import bert_tokenizer, bert_weights, minilm
  from kard_jax.reranker import interaction
  from kard_jax.reranker import scorer as scorer_lib

  B, K = args.questions, args.candidates
  folder = minilm.packaged_minilm_dir()
  bert_config, encoder = bert_weights.load_hf(folder)
  tok = bert_tokenizer.load_tokenizer(folder)
  questions, sentences = _texts(B, K)
  q = bert_tokenizer.encode(tok, questions, max_length=args.query_length, pad_to=args.query_length)
  p = bert_tokenizer.encode(tok, sentences, max_length=args.passage_length,
                            pad_to=args.passage_length)
  p_ids = p["input_ids"].reshape(B, K, -1)
  p_mask = p["attention_mask"].reshape(B, K, -1)

  cfg = scorer_lib.ScorerConfig("late_interaction", compression_dim=args.compression_dim,
                                train_passage_encoder=True)
  module = scorer_lib.make_scorer(cfg, bert_config)
  init = module.init(jax.random.PRNGKey(0), q["input_ids"][:1], q["attention_mask"][:1],
                     p_mask[:1, :1], passage_ids=p_ids[:1, :1])
  params = jax.tree.map(lambda x: np.asarray(getattr(x, "value", x)), init["params"])
  params["encoder"] = {k: v for k, v in encoder.items() if k != "pooler"}

  score = jax.jit(lambda prm, qi, qm, pm, pi: module.apply({"params": prm}, qi, qm, pm,
                                                           passage_ids=pi))
  ours = lambda: np.asarray(score(params, q["input_ids"], q["attention_mask"], p_mask,  # noqa
                                  p_ids))

  torch.set_grad_enabled(False)
  bert = transformers.BertModel.from_pretrained(folder, add_pooling_layer=False).eval()
  lin = torch.nn.Linear(bert_config.emb_dim, args.compression_dim)
  lin.weight.copy_(torch.tensor(params["compressor"]["kernel"].T))
  lin.bias.copy_(torch.tensor(params["compressor"]["bias"]))
  tq = {k: torch.tensor(v, dtype=torch.long) for k, v in q.items() if k != "token_type_ids"}
  tp = {k: torch.tensor(v, dtype=torch.long) for k, v in p.items() if k != "token_type_ids"}

  def reference():
    with torch.inference_mode():
      qv = lin(bert(**tq)[0])
      dv = lin(bert(**tp)[0])
      s = torch.bmm(qv.repeat_interleave(K, 0), dv.transpose(1, 2))
      s[~tp["attention_mask"].bool().unsqueeze(1).expand(-1, s.shape[1], -1)] = -10000
      s = s.max(-1).values
      s[~tq["attention_mask"].repeat_interleave(K, 0).bool()] = 0
      return s.sum(-1).reshape(B, K).numpy()

  diff = float(np.max(np.abs(ours() - reference())))
  scale = float(np.max(np.abs(reference())))
  print(f"batch: {B} questions x {K} candidates = {B * K} pairs, question length "
        f"{args.query_length}, passage length {args.passage_length}, {jax.device_count()} JAX "
        f"device(s), torch threads {torch.get_num_threads()}")
  print(f"max |ours - reference| = {diff:.3g} (scores up to {scale:.3g})")
  if diff > 1e-3 * max(scale, 1.0):
    raise SystemExit("scores disagree with the PyTorch reference")

  pairs = B * K

  # Inference as `kard rerank apply` runs it: passage vectors precomputed once.
  p_vec = np.asarray(jax.jit(lambda prm, i, m: module.apply(
      {"params": prm}, i, m, method="encode_passages"))(params, p_ids, p_mask))
  cached = jax.jit(lambda prm, qi, qm, pv, pm: interaction.maxsim(
      module.apply({"params": prm}, qi, qm, method="encode_query"), qm > 0, pv, pm > 0))
  run_cached = lambda: np.asarray(cached(params, q["input_ids"], q["attention_mask"], p_vec,  # noqa
                                         p_mask))
  t_ours, t_ref, t_cached = _timed([ours, reference, run_cached], args.repeats)
  print(f"ours (JAX, encode both sides): {pairs / t_ours:.1f} pairs/s ({t_ours * 1e3:.0f} ms)")
  print(f"reference (transformers PyTorch): {pairs / t_ref:.1f} pairs/s ({t_ref * 1e3:.0f} ms)")
  print(f"ours with cached passage vectors: {pairs / t_cached:.1f} pairs/s")
  print(f"ratio: {t_ref / t_ours:.2f}x")
  print(json.dumps({"pairs_per_s": round(pairs / t_ours, 2),
                    "reference_pairs_per_s": round(pairs / t_ref, 2),
                    "ratio": round(t_ref / t_ours, 3)}))


if __name__ == "__main__":
  main()
