"""SentencePiece vocabularies: train one on a prepared benchmark, or load any `spiece.model`.

From-scratch students (the synthetic benchmark, CPU runs) need a vocabulary fitted to their text:
`train_benchmark_vocab` trains a model on everything a model will read or write (the rendered
prompts of every split, the teacher rationales and the knowledge base). It keeps T5's ids (pad 0,
eos 1, unk 2, no bos), so a trained vocabulary and Flan-T5's `spiece.model` are loaded the same
way, through `seqio.SentencePieceVocabulary`, and T5X accepts either.

The default model type is BPE, not T5's unigram: on a small, repetitive corpus SentencePiece's
unigram seeding keeps even the commonest words in pieces ("Q u es tion :"), so the synthetic
benchmark's lines are ~36 tokens long with unigram against ~24 with BPE at the same vocabulary
size, and sequence length is what CPU training pays for. `model_type="unigram"` is one argument
away for large corpora.

Training is deterministic: the corpus is built in a fixed order, the trainer is seeded and runs
on one thread, so the same data gives a byte-identical model.
"""

from __future__ import annotations

import io
import os
from typing import Iterable, Iterator

from kard_jax.data import jsonl, prompts
from kard_jax.data.example import read_examples
from kard_jax.data.rationale import read_rationales

SPLITS = ("train", "validation", "test")
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
# Task prefixes and cues kept as single pieces.
USER_SYMBOLS = (prompts.RATIONALE_PREFIX.strip(), prompts.ANSWER_PREFIX.strip())


def benchmark_corpus(data_dir) -> Iterator[str]:
  """The text a model sees for a prepared benchmark, one line per string, in a fixed order."""
  data_dir = os.fspath(data_dir)
  for split in SPLITS:
    path = os.path.join(data_dir, "examples", f"{split}.jsonl")
    if not os.path.exists(path):
      continue
    for ex in read_examples(path):
      yield prompts.multitask_answer_inputs(ex.question, ex.choices)
      yield prompts.multitask_rationale_inputs(ex.question, ex.choices)
      yield prompts.kard_inputs(ex.question, ex.choices, ())
      yield prompts.render_target("answer_only", ex)
      yield prompts.render_target("reasoning", ex)
  path = os.path.join(data_dir, "rationales", "train.jsonl")
  if os.path.exists(path):
    for r in read_rationales(path):
      yield prompts.clean(r.rationale)
  path = os.path.join(data_dir, "kb", "passages.jsonl")
  if os.path.exists(path):
    for _, passage in jsonl.iter_jsonl(path):
      yield prompts.clean(f"{passage.get('title', '')} {passage.get('text', '')}")


def train_vocab(lines: Iterable[str], out_path, vocab_size: int, *, model_type: str = "bpe",
                byte_fallback: bool = False, character_coverage: float = 1.0, seed: int = 0,
                max_sentences: int = 2_000_000) -> str:
  """Trains a SentencePiece model on `lines`; writes it atomically to `out_path`; returns the path.

  `vocab_size` is a soft limit: a corpus too small for it gives fewer pieces rather than an
  error (read the real size from the loaded vocabulary). With `byte_fallback` unseen characters
  encode as bytes instead of unk (costs 256 ids).
  """
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel

  sentences = [s for s in (prompts.clean(l) for l in lines) if s]
  if not sentences:
    raise ValueError("cannot train a vocabulary on an empty corpus")
  spm.set_random_generator_seed(seed)
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
      model_type=model_type, character_coverage=character_coverage, byte_fallback=byte_fallback,
      pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
      user_defined_symbols=list(USER_SYMBOLS), hard_vocab_limit=False, split_digits=True,
      input_sentence_size=max_sentences, shuffle_input_sentence=True, num_threads=1,
      minloglevel=2)
  with jsonl.atomic_open(out_path, "wb") as f:
    f.write(model.getvalue())
  return os.fspath(out_path)


def train_benchmark_vocab(data_dir, vocab_size: int, out_path=None, **kwargs) -> str:
  """Trains on `benchmark_corpus(data_dir)`; writes data_dir/spiece.model unless `out_path`."""
  out_path = out_path or os.path.join(os.fspath(data_dir), "spiece.model")
  return train_vocab(benchmark_corpus(data_dir), out_path, vocab_size, **kwargs)


def load_vocab(path, extra_ids: int = 0):
  """A `seqio.SentencePieceVocabulary` for any spiece.model (ours: extra_ids=0; T5's: 100)."""
  import seqio  # pylint: disable=import-outside-toplevel

  return seqio.SentencePieceVocabulary(os.fspath(path), extra_ids=extra_ids)
