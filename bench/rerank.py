"""Reranking throughput: our MiniLM late interaction (JAX) vs the same scoring in PyTorch.

Both sides score the same batch of real StrategyQA (question, candidate sentence) pairs with the
packaged all-MiniLM-L6-v2 and the same compressor weights, KARD's ColBERT computation: encode the
questions and the candidates, project every token, sum over question tokens of the best dot
product with a candidate token. The reference is `transformers.BertModel` + `torch.nn.Linear` +
KARD's MaxSim on CPU under `torch.inference_mode`. Scores are checked to agree before timing.

Like for like: both sides run in this process on the same `--threads` cores (default 0: every core
this process may use; the process is pinned to them and PyTorch gets that many threads), float32,
same shapes; the first call of each (our compilation) is excluded and reported separately.
Distance to the physical limit: the scoring's matmul FLOPs (both encoders, the projection and
MaxSim) per our call time, over this machine's float32 `jnp.dot` rate measured in the same process
(and MFU against the published peak when JAX sees an accelerator).

    ./run.sh bench rerank    # or: python bench/rerank.py [--questions 8] [--candidates 16] [--out F]

Also reported (not in the ratio): our throughput when the passage vectors are precomputed, as
`kard rerank apply` runs. Writes results/bench_rerank.json (figures + stamp); the last stdout line
is the headline JSON.
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

from bench import common  # noqa: E402
from kard_jax.report import bench as bench_lib  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "data", "strategyqa")


def _texts(num_questions: int, num_candidates: int):
  with open(os.path.join(DATA, "strategyqa_train.json"), encoding="utf-8") as f:
    questions = [q["question"] for q in json.load(f)[:num_questions]]
  with open(os.path.join(DATA, "wiki_sentence_kb.jsonl"), encoding="utf-8") as f:
    sentences = [json.loads(line)["text"] for _, line in zip(range(num_questions * num_candidates),
                                                              f)]
  return questions, sentences


def _timed(fns, repeats: int) -> tuple[list[float], list[float]]:
  """(median seconds per call, first-call seconds) of each function; timed calls interleaved
  (ours, reference, ours, ...) so that both see the same machine load."""
  first = []
  for fn in fns:
    start = time.perf_counter()
    fn()  # warm-up (compilation for JAX)
    first.append(time.perf_counter() - start)
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, t in zip(fns, times):
      start = time.perf_counter()
      fn()
      t.append(time.perf_counter() - start)
  return [statistics.median(t) for t in times], first


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--questions", type=int, default=8)
  parser.add_argument("--candidates", type=int, default=16, help="candidates per question")
  parser.add_argument("--query_length", type=int, default=32)
  parser.add_argument("--passage_length", type=int, default=64)
  parser.add_argument("--compression_dim", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--threads", type=int, default=0,
                      help="cores both sides may use (0: all this process may use)")
  bench_lib.add_flags(parser, "rerank")
  args = parser.parse_args(argv)
  if args.tiny:
    args.questions, args.candidates, args.query_length, args.passage_length = 2, 2, 16, 16
    args.compression_dim, args.repeats = 32, 1
  if min(args.questions, args.candidates, args.query_length, args.passage_length,
         args.compression_dim, args.repeats) < 1 or args.threads < 0:
    parser.error("sizes and --repeats must be >= 1, --threads >= 0")
  n_threads = common.pin_cores(parser, args.threads)  # before JAX/PyTorch make thread pools

  m = bench_lib.measurement(("jax", "jaxlib", "flax", "torch", "transformers"), __file__, argv)

  import jax
  import torch
  import transformers

  from kard_jax.models import bert_tokenizer, bert_weights, minilm
  from kard_jax.report import limits as limits_lib
  from kard_jax.reranker import scorer as scorer_lib

  torch.set_num_threads(n_threads)
  limits = (limits_lib.measure(4 * 2**20, 128, repeats=2) if args.tiny else limits_lib.measure())

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

  grad_was_enabled = torch.is_grad_enabled()
  torch.set_grad_enabled(False)  # restored on return (tests run benches in one process)
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
  platform = jax.devices()[0].platform
  print(f"batch: {B} questions x {K} candidates = {B * K} pairs, question length "
        f"{args.query_length}, passage length {args.passage_length}, JAX {platform}, torch "
        f"threads {torch.get_num_threads()}", file=sys.stderr)
  print(f"max |ours - reference| = {diff:.3g} (scores up to {scale:.3g})", file=sys.stderr)
  if diff > 1e-3 * max(scale, 1.0):
    raise SystemExit("scores disagree with the PyTorch reference")

  pairs = B * K

  # Inference as `kard rerank apply` runs it: passage vectors precomputed once.
  p_vec = np.asarray(jax.jit(lambda prm, i, m: module.apply(
      {"params": prm}, i, m, method="encode_passages"))(params, p_ids, p_mask))
  cached = jax.jit(lambda prm, qi, qm, pv, pm: scorer_lib.maxsim(
      module.apply({"params": prm}, qi, qm, method="encode_query"), qm > 0, pv, pm > 0))
  run_cached = lambda: np.asarray(cached(params, q["input_ids"], q["attention_mask"], p_vec,  # noqa
                                         p_mask))
  (t_ours, t_ref, t_cached), first = _timed([ours, reference, run_cached], args.repeats)

  bc = bert_config
  encoder_flops = (
      limits_lib.bert_forward_flops(bc.num_layers, bc.emb_dim, bc.mlp_dim, args.query_length, B)
      + limits_lib.bert_forward_flops(bc.num_layers, bc.emb_dim, bc.mlp_dim,
                                      args.passage_length, B * K))
  projection_flops = 2 * bc.emb_dim * args.compression_dim * (
      B * args.query_length + B * K * args.passage_length)
  maxsim_flops = 2 * B * K * args.query_length * args.passage_length * args.compression_dim
  call_flops = encoder_flops + projection_flops + maxsim_flops
  fractions = limits_lib.mfu(call_flops / t_ours, limits)

  figures, about = {}, {}

  def put(name, value, what):
    figures[name], about[name] = value, what

  put("pairs_per_s", pairs / t_ours, "ours (JAX), both sides encoded per call, pairs/s")
  put("reference_pairs_per_s", pairs / t_ref, "transformers PyTorch, the same computation, pairs/s")
  put("ratio", t_ref / t_ours, "ours / reference (median call times), same cores and shapes")
  put("cached_passages_pairs_per_s", pairs / t_cached,
      "ours with passage vectors precomputed, as kard rerank apply runs (not in the ratio)")
  put("ours_first_call_s", first[0], "our first call: compilation (excluded from timings)")
  put("reference_first_call_s", first[1], "the reference's first call (excluded from timings)")
  put("max_score_difference", diff, "max |ours - reference| over the batch's scores")
  put("model_gflop_per_call", call_flops / 1e9,
      "matmul FLOPs of one scoring call (both encoders, projection, MaxSim)")
  put("ours_gflop_per_s", call_flops / t_ours / 1e9, "model FLOPs per our call time")
  put("measured_matmul_gflop_per_s", limits["matmul_flops_per_s"] / 1e9,
      "this machine's float32 jnp.dot rate in the same process, GFLOP/s")
  put("fraction_of_measured_matmul", fractions["fraction_of_measured_matmul"],
      "our model FLOP/s / the measured matmul rate")
  for key, value in fractions.items():
    if key.startswith("mfu_"):
      put(key, value, "MFU: our model FLOP/s / the accelerator's published "
          f"{key.split('_')[-2]} peak")
  print(f"ours {pairs / t_ours:.1f} pairs/s ({t_ours * 1e3:.0f} ms), reference "
        f"{pairs / t_ref:.1f} pairs/s ({t_ref * 1e3:.0f} ms) -> {t_ref / t_ours:.2f}x; cached "
        f"passages {pairs / t_cached:.1f} pairs/s; "
        f"{100 * fractions['fraction_of_measured_matmul']:.1f}% of the measured matmul rate",
        file=sys.stderr)

  setup = (f"{B} StrategyQA questions x {K} knowledge-base sentences = {pairs} pairs; MiniLM "
           f"late interaction (packaged all-MiniLM-L6-v2, {bc.num_layers} layers, hidden "
           f"{bc.emb_dim}; question length {args.query_length}, passage length "
           f"{args.passage_length}, compression {args.compression_dim}), both sides encoded per "
           f"call, float32; ours on JAX {platform}, the reference transformers BertModel + "
           f"torch Linear + KARD's MaxSim on PyTorch CPU; median of {args.repeats} interleaved "
           "calls after one warm-up call each")
  bench_lib.finish(
      "rerank", args.out, m, setup=setup,
      headline={"ratio": figures["ratio"],
                "ratio_is": "scored pairs/s, ours over the same scoring in transformers "
                            "PyTorch, same cores and shapes",
                "fraction_of_limit": figures["fraction_of_measured_matmul"],
                "limit_is": "the scoring's model FLOP/s over this machine's measured float32 "
                            "matmul rate"},
      figures=figures, about=about,
      threads={"ours": n_threads if platform == "cpu" else platform,
               "reference": torch.get_num_threads()},
      limits=limits)
  torch.set_grad_enabled(grad_was_enabled)
  return 0


if __name__ == "__main__":
  sys.exit(main())
