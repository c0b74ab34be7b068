"""The student verifier: the teacher's Verifier protocol, fed the Sci-CoT stage-2 prompt."""

from kard_jax.data.rationale import Rationale
from kard_jax.decoding.verifier import StudentVerifier
from kard_jax.teacher import filtering
from tests.decoding.chain_model import BENCHMARK, chain_examples


def test_student_verifier_accepts_exactly_what_the_student_answers(chain_run):
  root, model_dir = chain_run
  verifier = filtering.load_verifier("kard_jax.decoding.verifier:StudentVerifier", {
      "model_dir": model_dir, "vocab_file": f"{root}/{BENCHMARK}/spiece.model",
      "batch_size": "4", "max_decode_length": "12", "mesh_shape": "1,1"})
  assert isinstance(verifier, filtering.Verifier)
  examples = chain_examples()
  pairs = [(ex, Rationale(ex.id, 0, f"It is {ex.choices[0].text}. So, the answer is A.", "A"))
           for ex in examples]
  # The student reads every input as "So, the answer is B." under greedy decoding.
  assert verifier.verify_batch(pairs) == [ex.answer == "B" for ex in examples]
  assert verifier.verify(*pairs[1]) == (examples[1].answer == "B")
  # In the teacher's filter: rationales reaching the gold answer survive only where the student
  # (always B) agrees.
  right = [Rationale(ex.id, 0, f"So, the answer is {ex.answer}.", ex.answer) for ex in examples]
  kept, report = filtering.select(right, examples, verifier=verifier)
  assert [r.id for r in kept] == [ex.id for ex in examples if ex.answer == "B"]
  assert report.verifier_rejected == sum(ex.answer != "B" for ex in examples)

def test_input_is_the_stage_two_prompt_without_the_answer_statement():
  ex = chain_examples()[0]
  text = StudentVerifier.input_text(ex, Rationale(ex.id, 0, "Red paint.  So, the answer is A.",
                                                  "A"))
  assert text == ("Question: What colour is item 0? Answer Choices: (A) red (B) green (C) blue "
                  "Explanation: Red paint. Answer:")
