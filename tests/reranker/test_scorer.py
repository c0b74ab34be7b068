"""The scorers against PyTorch/transformers references: KARD's ColBERT and a BERT cross-encoder."""

import jax
import numpy as np
import pytest
import torch
import transformers

from kard_jax.models import bert_tokenizer, bert_weights
from kard_jax.reranker import scorer as scorer_lib

QUESTIONS = ["Where does Liguu Mouthuur live?", "Which country is Muuziis in?"]
PASSAGES = [["Liguu Mouthuur lives in Muuziis.", "Muuziis is a city in Buuzoul.", "Daake."],
            ["Muuziis is a city in Buuzoul.", "Zaavrith is a continent.", "Liguu was born."]]


@pytest.fixture(scope="module")
def setup(tiny_bert):
  bert_config, encoder = bert_weights.load_hf(tiny_bert)
  tok = bert_tokenizer.load_tokenizer(tiny_bert)
  torch_bert = transformers.BertModel.from_pretrained(tiny_bert, add_pooling_layer=False).eval()
  return bert_config, encoder, tok, torch_bert


def _late(bert_config, encoder, seed=0):
  cfg = scorer_lib.ScorerConfig("late_interaction", compression_dim=8)
  module = scorer_lib.make_scorer(cfg, bert_config)
  q = np.ones((1, 4), np.int32)
  init = module.init(jax.random.PRNGKey(seed), q, q, np.ones((1, 1, 4), np.int32),
                     passage_ids=np.ones((1, 1, 4), np.int32))
  params = jax.tree.map(np.asarray, jax.device_get(init["params"]))
  params = dict(params, encoder={k: v for k, v in encoder.items() if k != "pooler"})
  return module, jax.tree.map(lambda x: getattr(x, "value", x), params)


def _torch_colbert(torch_bert, kernel, bias, q, d):
  """KARD's ColBERT forward (dot-product MaxSim), written with PyTorch."""
  lin = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
  with torch.no_grad():
    lin.weight.copy_(torch.tensor(kernel.T))
    lin.bias.copy_(torch.tensor(bias))
    qv = lin(torch_bert(input_ids=q["input_ids"], attention_mask=q["attention_mask"])[0])
    dv = lin(torch_bert(input_ids=d["input_ids"], attention_mask=d["attention_mask"])[0])
    n = dv.shape[0] // qv.shape[0]
    score = torch.bmm(qv.repeat_interleave(n, 0), dv.transpose(1, 2))
    score[~d["attention_mask"].bool().unsqueeze(1).expand(-1, score.shape[1], -1)] = -10000
    score = score.max(-1).values
    score[~q["attention_mask"].repeat_interleave(n, 0).bool()] = 0
    return score.sum(-1).reshape(-1, n).numpy()


def test_late_interaction_matches_torch_colbert(setup):
  bert_config, encoder, tok, torch_bert = setup
  module, params = _late(bert_config, encoder)
  q = bert_tokenizer.encode(tok, QUESTIONS, max_length=16, pad_to=16)
  d = bert_tokenizer.encode(tok, [p for ps in PASSAGES for p in ps], max_length=12, pad_to=12)
  ours = module.apply({"params": params}, q["input_ids"], q["attention_mask"],
                      d["attention_mask"].reshape(2, 3, 12),
                      passage_ids=d["input_ids"].reshape(2, 3, 12))
  ref = _torch_colbert(torch_bert, params["compressor"]["kernel"], params["compressor"]["bias"],
                       {k: torch.tensor(v, dtype=torch.long) for k, v in q.items()},
                       {k: torch.tensor(v, dtype=torch.long) for k, v in d.items()})
  np.testing.assert_allclose(np.asarray(ours), ref, rtol=2e-4, atol=2e-3)


def test_cached_passage_states_give_the_same_scores(setup):
  """Feeding precomputed (frozen-encoder) token states equals encoding the ids in the scorer."""
  bert_config, encoder, tok, _ = setup
  module, params = _late(bert_config, encoder)
  q = bert_tokenizer.encode(tok, QUESTIONS, max_length=16, pad_to=16)
  d = bert_tokenizer.encode(tok, [p for ps in PASSAGES for p in ps], max_length=12, pad_to=12)
  ids, mask = d["input_ids"].reshape(2, 3, 12), d["attention_mask"].reshape(2, 3, 12)
  states = module.apply({"params": params}, ids, mask, method="hidden")
  from_ids = module.apply({"params": params}, q["input_ids"], q["attention_mask"], mask,
                          passage_ids=ids)
  from_states = module.apply({"params": params}, q["input_ids"], q["attention_mask"], mask,
                             passage_states=states)
  np.testing.assert_allclose(np.asarray(from_states), np.asarray(from_ids), rtol=1e-6, atol=1e-5)
  with pytest.raises(ValueError, match="exactly one"):
    module.apply({"params": params}, q["input_ids"], q["attention_mask"], mask)


def test_jl_compressor_keeps_dot_products_on_average():
  """The compressor's init makes the untrained scorer approximate MaxSim on the raw states."""
  x = np.random.default_rng(0).normal(size=(64, 256)).astype(np.float32)
  w = np.asarray(scorer_lib._jl_init(jax.random.PRNGKey(1), (256, 128)))
  raw, compressed = x @ x.T, (x @ w) @ (x @ w).T
  ratio = np.sum(compressed * raw) / np.sum(raw * raw)  # least-squares scale between the two
  assert 0.8 < ratio < 1.2


def test_cross_encoder_matches_torch_head_on_cls(setup):
  bert_config, encoder, tok, torch_bert = setup
  module = scorer_lib.make_scorer(scorer_lib.ScorerConfig("cross_encoder"), bert_config)
  pairs = [(q, p) for q, ps in zip(QUESTIONS, PASSAGES) for p in ps]
  enc = bert_tokenizer.encode(tok, pairs, max_length=24, pad_to=24)
  shaped = {k: v.reshape(2, 3, 24) for k, v in enc.items()}
  init = module.init(jax.random.PRNGKey(0), shaped["input_ids"], shaped["attention_mask"],
                     shaped["token_type_ids"])
  params = jax.tree.map(lambda x: np.asarray(getattr(x, "value", x)), init["params"])
  params = dict(params, encoder={k: v for k, v in encoder.items() if k != "pooler"})
  ours = module.apply({"params": params}, shaped["input_ids"], shaped["attention_mask"],
                      shaped["token_type_ids"])
  with torch.no_grad():
    h = torch_bert(**{k: torch.tensor(v, dtype=torch.long) for k, v in enc.items()})[0][:, 0]
    ref = (h.numpy() @ params["head"]["kernel"] + params["head"]["bias"]).reshape(2, 3)
  np.testing.assert_allclose(np.asarray(ours), ref, rtol=2e-4, atol=2e-4)


def test_cross_encoder_always_trains_its_encoder():
  assert scorer_lib.ScorerConfig("cross_encoder").train_passage_encoder
  with pytest.raises(ValueError, match="unknown scorer kind"):
    scorer_lib.ScorerConfig("bi_encoder")


def test_tail_mode_on_frozen_bottom_states_equals_the_whole_scorer(setup):
  """trainable_query_layers: frozen bottom states + the encoder tail = the full scorer's scores."""
  import dataclasses

  from kard_jax.models import bert as bert_lib

  bert_config, encoder, tok, _ = setup
  full, params = _late(bert_config, encoder)
  cfg = scorer_lib.ScorerConfig("late_interaction", compression_dim=8, trainable_query_layers=1)
  tail = scorer_lib.make_scorer(cfg, bert_config)
  assert tail.query_start_layer == bert_config.num_layers - 1
  tail_params = {"compressor": params["compressor"],
                 "encoder": {k: v for k, v in params["encoder"].items()
                             if k == f"layers_{tail.query_start_layer}"}}
  bottom = bert_lib.Bert(dataclasses.replace(bert_config, num_layers=tail.query_start_layer,
                                             pooler=False))
  q = bert_tokenizer.encode(tok, QUESTIONS, max_length=16, pad_to=16)
  d = bert_tokenizer.encode(tok, [p for ps in PASSAGES for p in ps], max_length=12, pad_to=12)
  ids, mask = d["input_ids"].reshape(2, 3, 12), d["attention_mask"].reshape(2, 3, 12)
  states = full.apply({"params": params}, ids, mask, method="hidden")
  q_states = bottom.apply({"params": params["encoder"]}, q["input_ids"], q["attention_mask"],
                          enable_dropout=False).hidden_states
  want = full.apply({"params": params}, q["input_ids"], q["attention_mask"], mask,
                    passage_states=states)
  got = tail.apply({"params": tail_params}, q_states, q["attention_mask"], mask,
                   passage_states=states)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-4)
  with pytest.raises(ValueError, match="frozen passage encoder"):
    scorer_lib.ScorerConfig("late_interaction", train_passage_encoder=True,
                            trainable_query_layers=1)
