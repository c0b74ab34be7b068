"""`parse_answer` on real teacher outputs: gpt-3.5-turbo-instruct's StrategyQA rationales.

Each row names a rationale in ../shared/data/rationales/ by (qid, k: its k-th line for that qid)
and the label its text states, decided by reading it: A (yes) or B (no) where the rationale states
an answer ("So, yes, ...", "the answer is no", "Conclusion: No, ...", an opening "Yes, ..."), None
where it only argues ("In conclusion, Siri does have knowledge of geometry", "There is no
definitive answer ...") -- a parser must not guess those. The teacher's own `teacher_answer` field
is not the expected value: it was produced by another reader of the same text.
"""

import json

import pytest

from kard_jax.data.answers import parse_answer
from kard_jax.data.example import Choice

FILE = "rationales/strategyqa_mentorkd_gpt-3.5-turbo-instruct_train.normalized.jsonl"
YES_NO = (Choice("A", "yes"), Choice("B", "no"))

TABLE = [
    # rationales that contain the word "answer" (every one in the file with a qid)
    ("947a089ce6992869815a", 0, "A"),  # opens "Yes, the swallow did play a role ..."
    ("947a089ce6992869815a", 1, "A"),  # opens "Yes, the swallow played a role ..."
    ("2f49d601ea00411ef3d5", 1, None),  # "did not answer to the Pope": the verb, no statement
    ("e7ba17761073c7a1ec24", 0, "B"),  # opens "No, the US Secretary of State is not similar"
    ("e7ba17761073c7a1ec24", 1, "B"),  # the same opening
    ("e7ba17761073c7a1ec24", 2, None),  # "In summary, ... are not similar": no yes/no stated
    ("07ea848474b8dff89299", 0, "A"),  # "So, to answer the question, yes, King Manuel I ..."
    ("09a493a0d04b4bed378b", 0, "A"),  # "so the answer is yes, a Disney princess ..."
    ("4f4e7cbebe4b1b2bdb13", 1, "B"),  # opens "No, different colored pens are not necessary"
    ("df951faeafccf7c29be9", 1, "B"),  # "So, to answer your question, no, neither side ..."
    ("959fb200fccf056f00d7", 2, None),  # "to answer your question, Naruto did not escape"
    ("0da3b98c8e6af0dd89d3", 0, None),  # "In conclusion, while Siri may have some knowledge"
    ("0da3b98c8e6af0dd89d3", 2, None),  # "In conclusion, Siri does have knowledge of geometry"
    ("cea676f4afc9e1051166", 0, "B"),  # opens "No, the United States Secretary of State ..."
    ("cea676f4afc9e1051166", 1, "B"),
    ("cea676f4afc9e1051166", 2, "B"),
    ("1b5275d230fa30272cb5", 2, None),  # "while there is no definitive answer to whether ..."
    ("377427ca79b717bdcb83", 1, None),  # "There is no definitive answer to this question"
    ("bdc60c16ac8d47491464", 1, "A"),  # "So, to answer the question, yes, Spiderman and Falcon"
    ("95bd44fab517139182f2", 1, "A"),  # "Therefore, the answer is yes, Alan Greenspan ..."
    ("115dd3102b245bdbc737", 1, "B"),  # "So, to answer the question, no, Dr. Seuss did not ..."
    ("5f267b7c20090236a2fb", 1, None),  # "Conclusion: Based on the information available, ..."
    ("5090f573b09ac3050824", 2, None),  # "it is plausible ... we cannot definitively say"
    ("0d528ce1fdd22c9d8aa0", 0, "A"),  # "Therefore, the answer is yes, the producer ..."
    ("0d528ce1fdd22c9d8aa0", 1, "A"),
    ("52a0dd337fb870fa3eb8", 2, None),  # "I am unable to provide a definitive answer."
    ("d9e23006aef632b6d65f", 0, None),  # "In conclusion, while it is difficult to compare ..."
    ("ca09aea1e9589ef40c61", 0, "A"),  # "..., the answer is yes."
    ("d667c4a43fea660f1a5f", 2, None),  # "In conclusion, while there is no definitive answer"
    ("0df67cbe1345f90555dd", 2, None),  # "There is no way to definitively answer this question"
    ("18586794a7000980c6a8", 1, None),  # "while there is no definitive answer ... it is possible"
    ("e263728bd940c5c71bdf", 1, None),  # "So to answer the question, chaff itself is not ..."
    # closing "Conclusion:" lines
    ("5a5ccd78ba4d4af27bc6", 1, None),  # "Conclusion: Bucharest is not located south of Egypt"
    ("7b02fc57b8949146bd28", 2, None),  # "Conclusion: While Disney does not own a separate ..."
    ("e56fdbdf08cdc8694536", 2, None),  # "Conclusion: The Powerpuff Girls would not likely ..."
    ("b816f51e0fedcae2a789", 2, None),  # "Conclusion: The Liberty Bell is no longer in ..."
    ("5e2d9519c7c521411817", 0, None),  # "Conclusion: Based on the theme of TMNT, ..."
    ("24418db1d18a7fdf79f3", 1, None),  # "Conclusion: ... basil is not a significant source"
    ("cee57fee546c1d7df94b", 2, None),  # "Conclusion: Overall, Route 66 is not generally ..."
    ("fdeec181aeee06303113", 0, None),  # "Conclusion: Overall, it is less likely to find ..."
    ("5179b1021cc1b2fe1aa6", 1, "B"),  # "Conclusion: No, Gordon Ramsey would not use uranium"
    ("45cccf7bbcd884bc0af0", 0, None),  # "Conclusion: Led Zeppelin won a prime number of ..."
    ("cd38f5c76c18493b158b", 1, None),  # "Conclusion: It is best to eat soup with a spoon"
    # a conclusion word right before yes/no
    ("0ea87e725225e7ce5c51", 0, "A"),  # "3. Therefore, yes, Christina Aguilera was born ..."
    ("0d528ce1fdd22c9d8aa0", 2, "A"),  # "So, yes, the producer of Easy Rider, Peter Fonda, ..."
    ("59f7a8f6031615bfd3f7", 0, "A"),  # "Therefore, yes, Christmas is generally celebrated ..."
    ("0688bd3291c81ffcfea1", 2, "A"),  # "In conclusion, yes, the United States Navy does ..."
    ("d4c4c4c7fb085e6d1d98", 1, "A"),  # "So, yes, Alan Alda is old enough ..."
    ("3f5af97fdff20028347b", 1, "B"),  # "In conclusion, no, the French Revolution was not ..."
    ("e40cbe4b89942e256377", 2, "A"),  # "So, yes, he had reason to cheer in 1986 ..."
    ("a1493f4a007aa2d7ca24", 2, "B"),  # "So, no, Super Mario does not mainly focus on ..."
    ("8de3fccde94a5f8448bb", 1, "A"),  # "5. Therefore, yes, the Palace of Westminster can ..."
    ("497501e6d21674257ca5", 2, "A"),  # "So, yes, it is entirely feasible for an NBA game ..."
    # an opening "Yes, ..." / "No, ..."
    ("715336c5f99281337469", 0, "B"),  # "No, Amazon was not involved in the lunar landing."
    ("db7ceb3da1361288eeb2", 0, "A"),  # "Yes, there are multiple Star Wars TV shows ..."
    ("bfc739cbf7aaf9f53ada", 1, "B"),  # "No, The Mentalist was not filmed in black and white."
    ("54b08f028141c591badd", 0, "B"),  # "No, dyslexia is not considered an intellectual ..."
    ("505424c2715e4c11506b", 2, "A"),  # "Yes, being an accountant may be a difficult ..."
    ("88b682482647a80a080d", 1, "B"),  # "No, adding water to rice pudding does not make it ..."
    ("65455e361b1bc45132db", 0, "B"),  # "No, the Coen brothers ... have not collaborated ..."
    # rationales that argue without stating an answer
    ("115dd3102b245bdbc737", 0, None),  # "... he persevered and continued to create works"
    ("082af323f414128588b8", 1, None),  # "Ropes are indeed essential ...": agreement, no answer
    ("81cb69ab13c3195331c4", 2, None),  # "So while the formation type ... may not directly help"
    ("2b45a624da84a288d37e", 1, None),  # "Therefore, all Wednesdays in a year are enough ..."
    ("47cb63978585d5292d79", 0, None),  # "Therefore, while having a driver's license may be ..."
    ("4a915ea5d025292cd7ec", 0, None),  # breaks off mid-sentence ("In contrast, English serfs were")
    ("f1fec95172ebcbdf1fb8", 2, None),  # "it is ultimately up to her individual beliefs ..."
    ("b002c8cef0a1b3f84f7a", 0, None),  # "Overall, it is highly unlikely that a chipmunk ..."
    ("ee3000c7feb6bfb4ef2f", 1, None),  # "In conclusion, no matter what platform ...": not a "no"
]


@pytest.fixture(scope="module")
def rationales(shared_data):
  out = {}
  with open(shared_data / FILE, encoding="utf-8") as f:
    for line in f:
      obj = json.loads(line)
      key = obj["qid"]
      k = sum(1 for q, _ in out if q == key)
      out[(key, k)] = obj["rationale"]
  return out


def test_the_table_is_large_and_mixed():
  assert len(TABLE) >= 60 and len({(q, k) for q, k, _ in TABLE}) == len(TABLE)
  labels = [label for _, _, label in TABLE]
  assert labels.count("A") >= 15 and labels.count("B") >= 15 and labels.count(None) >= 15


@pytest.mark.parametrize("qid,k,label", TABLE, ids=[f"{q}-{k}" for q, k, _ in TABLE])
def test_parse_answer_on_real_teacher_rationales(rationales, qid, k, label):
  assert parse_answer(rationales[(qid, k)], YES_NO) == label


# Hedges name two different choices in the answer statement: not an answer.
CITIES = (Choice("A", "London"), Choice("B", "Paris"), Choice("C", "New York"),
          Choice("D", "York"))


@pytest.mark.parametrize("text,choices", [
    ("So, the answer is A or B.", CITIES),
    ("The answer is (A) and (C).", CITIES),
    ("(A) and (C)", CITIES),
    ("A, B", CITIES),
    ("the answer is A/B", CITIES),
    ("Answer: either B or D", CITIES),
    ("So, the answer is Paris or London.", CITIES),
    ("The answer is (B) Paris or (A) London.", CITIES),
    ("So, the answer is yes or no.", YES_NO),
    ("The answer is yes and no.", YES_NO),
    ("First, the answer is A. On reflection, the answer is B or C.", CITIES),
])
def test_a_hedge_is_not_an_answer(text, choices):
  assert parse_answer(text, choices) is None


@pytest.mark.parametrize("text,choices,label", [
    ("Paris is in France. B is the answer.", CITIES, "B"),
    ("So (C) is the correct answer.", CITIES, "C"),
    ("Hence the correct option is (B).", CITIES, "B"),
    ("The best choice is D.", CITIES, "D"),
    ("Answer: (b)", CITIES, "B"),
    ("Pears float because they are less dense.\nFinal answer: yes", YES_NO, "A"),
    ("Conclusion: No, it would not.", YES_NO, "B"),
    ("So, to answer the question, yes, it can.", YES_NO, "A"),
    ("The answer is (B) Paris.", CITIES, "B"),  # a label and its own text: one answer
    ("The answer is B, because Paris is in France.", CITIES, "B"),
    ("answer: C, New York", CITIES, "C"),
    ("No, it cannot. So, the answer is yes.", YES_NO, "A"),  # the last statement wins
])
def test_common_answer_statements(text, choices, label):
  assert parse_answer(text, choices) == label
