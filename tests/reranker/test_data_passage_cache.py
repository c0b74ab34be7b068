"""Token tables: padded gathers, length-bucketed encoding and the incremental disk cache."""

import numpy as np

from kard_jax.reranker import data as data_lib


def _table():
  ids = [np.array([2, 5, 6, 3]), np.array([2, 7, 3]), np.array([2, 8, 9, 10, 11, 3])]
  return data_lib.id_table([40, 10, 25], ids), ids


def test_gather_pads_masks_and_truncates():
  table, ids = _table()
  values, mask = table.gather(np.array([[10, 40], [25, 10]]), 5,
                              valid=np.array([[1, 1], [1, 0]]))
  assert values.shape == (2, 2, 5) and mask.shape == (2, 2, 5)
  assert values[0, 0].tolist() == [2, 7, 3, 0, 0] and mask[0, 0].tolist() == [1, 1, 1, 0, 0]
  assert values[1, 0].tolist() == ids[2][:5].tolist() and mask[1, 0].sum() == 5
  assert mask[1, 1].sum() == 0 and values[1, 1].sum() == 0


def test_bucketed_encoding_equals_encoding_each_passage_alone():
  table, ids = _table()
  weights = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)

  def encode(x, mask):  # position-dependent, like an encoder: any padding mistake shows
    return weights[x] + np.arange(x.shape[1])[None, :, None] * mask[..., None]

  out = data_lib.encode_table(table, encode, batch_size=2, bucket=4, dtype=np.float32,
                                   show_progress=False)
  for pos, v in zip([40, 10, 25], ids):
    np.testing.assert_allclose(out.get(pos), encode(v[None], np.ones((1, len(v))))[0])


def test_cache_computes_only_missing_passages(tmp_path):
  table, _ = _table()
  calls = []

  def compute(missing):
    calls.append(missing.tolist())
    return data_lib.subset(table, missing)

  parts = {"what": "test"}
  first = data_lib.cached(str(tmp_path), parts, np.array([40, 10]), compute)
  assert calls == [[10, 40]] and len(first) == 2
  again = data_lib.cached(str(tmp_path), parts, np.array([10, 25, 40]), compute)
  assert calls == [[10, 40], [25]]
  for p in (10, 25, 40):
    np.testing.assert_array_equal(again.get(p), table.get(p))
  data_lib.cached(str(tmp_path), parts, np.array([25]), compute)
  assert len(calls) == 2
  data_lib.cached(str(tmp_path), {"what": "other"}, np.array([25]), compute)
  assert len(calls) == 3  # other settings, other cache
