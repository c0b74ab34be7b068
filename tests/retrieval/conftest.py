"""Small deterministic corpora and indexes shared by the retrieval tests."""

import random

import pytest

from kard_jax.retrieval.bm25_index import build_index
from kard_jax.retrieval.passages import Passage

_WORDS = ("river mountain forest desert ocean island valley glacier volcano canyon city village "
          "castle bridge tower market harbor temple library garden king queen knight farmer "
          "merchant sailor painter doctor teacher soldier runs running ran swims swimming built "
          "builds building grows growing sings sang red green blue golden ancient modern").split()
_STOP = "the a of and in on is was to with for by".split()


def make_passages(n: int, seed: int = 0) -> list[Passage]:
  """Zipf-ish random sentences with stop words, titles, repeats and a few odd cases."""
  rng = random.Random(seed)
  weights = [1.0 / (i + 1) for i in range(len(_WORDS))]
  out = []
  for i in range(n):
    words = []
    for _ in range(rng.randint(3, 30)):
      words.append(rng.choice(_STOP) if rng.random() < 0.3 else rng.choices(_WORDS, weights)[0])
    title = rng.choice(["", "Atlas", "Café Müller", "Harbor Notes"])
    out.append(Passage(f"p{i}", title, " ".join(words).capitalize() + "."))
  out.append(Passage("stop-only", "", "The of and."))
  out.append(Passage("unicode", "Ünïcode", "Naïve café RUNNING near the Fjörd; 東京 tower."))
  return out


@pytest.fixture(scope="session")
def passages():
  return make_passages(300)


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, passages):
  path = tmp_path_factory.mktemp("bm25") / "index"
  build_index(passages, path, show_progress=False).close()
  return path


@pytest.fixture(scope="session")
def queries(passages):
  rng = random.Random(1)
  out = [" ".join(rng.sample(p.text.rstrip(".").split(), min(4, len(p.text.split()))))
         for p in passages[:60]]
  return out + ["swimming castles near ancient harbors", "zzz unknown words only", "the of"]
