"""Compiled decoding of the students and the evaluation built on it.

  sampling.py     temperature, exact top-k / top-p masks, categorical sampling
  decode.py       the greedy / sampling while-loop over a `tokens_to_logits` step function
  beam_search.py  beam search with T5X's length penalty, over the same step function
  adapters.py     step functions and caches of the T5 and GPT students; the compiled entry point
  predictor.py    a restored checkpoint ready to decode token inputs in fixed-shape blocks
  voting.py       self-consistency majority vote and its tie rule
  evaluate.py     task split -> predictions.jsonl + metrics.json (`kard eval`)
  verifier.py     a student checkpoint as the teacher's rationale verifier
"""
