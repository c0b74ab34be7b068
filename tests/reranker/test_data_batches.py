"""Reranker batches: shapes match the spec, the stream resumes exactly, hosts split one batch."""

import numpy as np
import pytest
import seqio

from kard_jax.data.example import read_examples
from kard_jax.data.rationale import read_rationales
from kard_jax.models import bert_tokenizer
from kard_jax.reranker import data as data_lib
from kard_jax.reranker.data import RerankerInput, Tables

CFG = data_lib.CandidateConfig(rationale_top=6, question_top=6, rationale_samples=2,
                               question_samples=2, eval_candidates=5)


@pytest.fixture(scope="module")
def parts(tiny_data, tiny_bert):
  data_dir, index = tiny_data
  examples = {e.id: e for e in read_examples(f"{data_dir}/examples/train.jsonl")}
  pairs = [data_lib.Pair(r.id, r.sample, examples[r.id].question, r.rationale)
           for r in read_rationales(f"{data_dir}/rationales/train.jsonl")]
  built = data_lib.build_examples(index, pairs, CFG, show_progress=False)
  tok = bert_tokenizer.load_tokenizer(tiny_bert)
  positions = data_lib.candidate_positions(built)
  ids = data_lib.id_table(positions, data_lib.tokenize(
      tok, [index.passages[int(p)].index_text() for p in positions], 16))
  questions = sorted({e.question for e in built})
  q_ids = dict(zip(questions, data_lib.tokenize(tok, questions, 12)))
  states = data_lib.TokenTable(ids.positions, ids.offsets,
                                    np.repeat(ids.values[:, None], 3, 1).astype(np.float16))
  return built, q_ids, ids, states


@pytest.mark.parametrize("layout", ["states", "tail", "ids", "pairs"])
def test_batches_match_the_spec(parts, layout):
  built, q_ids, ids, states = parts
  q_states = {q: np.repeat(v[:, None], 3, 1).astype(np.float16) for q, v in q_ids.items()}
  tables = Tables(layout, q_ids, ids, states if layout in ("states", "tail") else None,
                  q_states if layout == "tail" else None,
                  max_query_length=12, max_passage_length=16, max_pair_length=24, sep_id=3)
  stream = RerankerInput(built, tables, CFG, batch_size=4, training=True, seed=0)
  batch = next(stream.batches())
  spec = stream.element_spec
  assert set(batch) == set(spec)
  for name, value in batch.items():
    assert value.shape == spec[name].shape and value.dtype == spec[name].dtype, name
  if layout == "tail":  # each row holds some question's frozen states, padded with zeros
    n = int(batch["query_mask"][0].sum())
    assert any(np.array_equal(batch["query_states"][0, :n], v[:12]) and len(v[:12]) == n
               for v in q_states.values())
    assert not batch["query_states"][0, n:].any()
  if layout == "pairs":
    row = batch["pair_ids"][0, 0][batch["pair_mask"][0, 0] > 0]
    assert row[-1] == 3 and batch["pair_type_ids"][0, 0, 0] == 0
    assert batch["pair_type_ids"][0, 0][batch["pair_mask"][0, 0] > 0][-1] == 1


def test_training_stream_resumes_exactly_and_shards_split_the_batch(parts):
  built, q_ids, ids, states = parts
  tables = Tables("states", q_ids, ids, states, max_query_length=12, max_passage_length=16)
  stream = RerankerInput(built, tables, CFG, batch_size=4, training=True, seed=3)
  it = stream.batches()
  first = [next(it) for _ in range(12)]  # crosses an epoch boundary (34 pairs / 4 per batch)
  resumed = next(RerankerInput(built, tables, CFG, 4, True, 3).batches(start=9))
  for name in first[9]:
    np.testing.assert_array_equal(first[9][name], resumed[name])
  halves = [next(RerankerInput(built, tables, CFG, 4, True, 3, seqio.ShardInfo(i, 2))
                 .batches(start=9)) for i in range(2)]
  for name in first[9]:
    np.testing.assert_array_equal(np.concatenate([h[name] for h in halves]), first[9][name])
  epoch = [first[0]["query_ids"]] + [b["query_ids"] for b in first[1:8]]
  assert len({tuple(r) for b in epoch for r in b}) > 4  # shuffled questions, not one repeated


def test_evaluation_is_one_padded_pass(parts):
  built, q_ids, ids, states = parts
  tables = Tables("ids", q_ids, ids, None, max_query_length=12, max_passage_length=16)
  stream = RerankerInput(built, tables, CFG, batch_size=8, training=False, seed=0)
  batches = list(stream.batches())
  assert len(batches) == -(-len(built) // 8)
  real_rows = sum(int(b["candidate_mask"].any(-1).sum()) for b in batches)
  assert real_rows == len(built)
  assert not batches[-1]["candidate_mask"][len(built) % 8:].any()
  again = list(RerankerInput(built, tables, CFG, 8, False, 0).batches())
  np.testing.assert_array_equal(batches[0]["passage_ids"], again[0]["passage_ids"])
