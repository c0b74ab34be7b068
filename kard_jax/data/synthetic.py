"""The synthetic knowledge benchmark: multi-hop 4-choice questions about a fictional world.

It tests the paper's claim in miniature. Questions ask about long-tail entities (people,
companies; see `synthetic_world`) through 2 or 3 hops:

  In which country was Tovarin Kessel born?           person -> city -> country
  On which continent is Zantrex Forge headquartered?  company -> city -> country -> continent
  Which language is spoken in the country where Ilsa Moreb lives?
                                                      person -> city -> country -> language

The first hop is a long-tail fact that lives in one knowledge-base passage; the later hops go
through a few head entities (cities, countries) that recur across training rationales. Evaluation
questions about *unseen* subjects (never asked about in training) are answerable only by reading
the subject's passage; *seen* ones ask a new question about a training subject (memorisation).
Distractors are of the answer's type, and with `distractor_difficulty` > 0 include the answer a
reader of the wrong passage would give (the other relation of the same person, or a namesake's).

The teacher ("synthetic-oracle") states the facts used, in order, in a few surface variants, and
ends with "So, the answer is C." `write_benchmark` writes the standard prepared layout, so every
later stage treats the benchmark like a real one. Output is a pure function of the config.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from typing import Any, Sequence

from kard_jax.data import jsonl
from kard_jax.data.example import Choice, Example, write_examples
from kard_jax.data.prompts import answer_phrase
from kard_jax.data.rationale import Rationale, write_rationales
from kard_jax.data.synthetic_world import World, build_world, kb_passages

TEACHER = "synthetic-oracle"
VERSION = 1

# relation -> (subject kind, hops, first-hop link, answer type, question templates)
# first-hop links: born/lives (person -> city), hq (company -> city).
_QUESTIONS: dict[str, tuple[str, int, str, str, tuple[str, ...]]] = {
    "born_city": ("person", 1, "born", "city", ("In which city was {s} born?",
                                                "Which city was {s} born in?")),
    "lives_city": ("person", 1, "lives", "city", ("In which city does {s} live?",
                                                  "Which city does {s} live in?")),
    "hq_city": ("company", 1, "hq", "city", ("In which city is {s} headquartered?",
                                             "Where is {s} headquartered?")),
    "born_country": ("person", 2, "born", "country", ("In which country was {s} born?",
                                                      "{s} was born in which country?")),
    "lives_country": ("person", 2, "lives", "country", ("In which country does {s} live?",
                                                        "{s} lives in which country?")),
    "hq_country": ("company", 2, "hq", "country", ("In which country is {s} headquartered?",
                                                   "{s} has its headquarters in which country?")),
    "born_continent": ("person", 3, "born", "continent", ("On which continent was {s} born?",
                                                          "{s} was born on which continent?")),
    "lives_continent": ("person", 3, "lives", "continent", ("On which continent does {s} live?",
                                                            "{s} lives on which continent?")),
    "hq_continent": ("company", 3, "hq", "continent", ("On which continent is {s} headquartered?",
                                                       "{s} is headquartered on which continent?")),
    "born_language": ("person", 3, "born", "language",
                      ("Which language is spoken in the country where {s} was born?",)),
    "lives_language": ("person", 3, "lives", "language",
                       ("Which language is spoken in the country where {s} lives?",)),
    "hq_language": ("company", 3, "hq", "language",
                    ("Which language is spoken in the country where {s} is headquartered?",)),
}

# Rationale sentence variants per hop.
_SAY_LINK = {
    "born": ("{a} was born in {b}.", "{a} is a native of {b}.", "{a} was born in the city of {b}."),
    "lives": ("{a} lives in {b}.", "{a} resides in {b}.", "{a} makes their home in {b}."),
    "hq": ("{a} is headquartered in {b}.", "{a} has its headquarters in {b}.",
           "{a} is based in {b}."),
    "country": ("{a} is in {b}.", "{a} is a city in {b}.", "{a} is located in {b}."),
    "continent": ("{a} is on the continent of {b}.", "{a} is a country in {b}.",
                  "{a} lies in {b}."),
    "language": ("People in {a} speak {b}.", "The language of {a} is {b}.",
                 "{b} is spoken in {a}."),
}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Knobs of the synthetic benchmark.

  The defaults give a CPU-sized task: 328 passages, 420 training questions (1,260 rationales),
  100 validation and 200 test questions (75% about unseen subjects), written in well under a
  second; KARD inputs with 3 passages are ~100 tokens under a 1-2k-piece vocabulary.
  """
  num_entities: int = 300  # long-tail subjects: people and companies
  company_share: float = 0.25  # share of the subjects that are companies
  num_cities: int = 16
  num_countries: int = 8
  num_continents: int = 4
  hops: tuple[int, ...] = (2, 3)  # question hop counts to generate (subset of 1, 2, 3)
  distractor_difficulty: float = 0.5  # 0: unique names, random distractors; 1: maximal confusion
  unseen_share: float = 0.3  # share of subjects never asked about in training
  train_questions_per_entity: int = 2
  num_validation: int = 100
  num_test: int = 200
  seen_share: float = 0.25  # share of evaluation questions about training subjects
  # What a "seen" evaluation question asks: "new" (a relation of a training subject that no
  # training question asked: recalling a fact stated in training rationales), or "asked" (a
  # training question again, re-worded and with new distractors: plain memorisation, the
  # regime where fine-tuning works while its knowledge fits in its weights).
  seen_questions: str = "new"
  # How the teacher's rationale names the question's subject: "name" (its full name: "Tovarin
  # Kessel was born in Daake. ...") or "pronoun" ("He was born in Daake. ...": shorter
  # rationales whose facts are the same; a student then need not spell a rare name back).
  rationale_subject: str = "name"
  rationales_per_question: int = 3
  num_choices: int = 4
  # How rationales and answer targets name the answer: "label" ("So, the answer is C.", as KARD's
  # benchmarks) or "text" ("So, the answer is Daake."; parsed back to the label the same way).
  answer_format: str = "label"
  seed: int = 0

  def __post_init__(self):
    if self.num_entities < 4:
      raise ValueError("num_entities must be at least 4")
    if not self.hops or not set(self.hops) <= {1, 2, 3}:
      raise ValueError(f"hops must be a non-empty subset of (1, 2, 3), got {self.hops}")
    for name in ("company_share", "distractor_difficulty", "unseen_share", "seen_share"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
    if self.seen_questions not in ("new", "asked"):
      raise ValueError(f"seen_questions must be 'new' or 'asked', got {self.seen_questions!r}")
    if self.rationale_subject not in ("name", "pronoun"):
      raise ValueError(f"rationale_subject must be 'name' or 'pronoun', got "
                       f"{self.rationale_subject!r}")
    if self.answer_format not in ("label", "text"):
      raise ValueError(f"answer_format must be 'label' or 'text', got {self.answer_format!r}")
    if self.num_choices < 2 or self.num_choices > 26:
      raise ValueError("num_choices must lie in [2, 26]")
    need = {"cities": (self.num_cities, 1), "countries": (self.num_countries, 2),
            "continents": (self.num_continents, 3)}
    for what, (count, hops) in need.items():
      if max(self.hops) >= hops and count < self.num_choices:
        raise ValueError(f"{max(self.hops)}-hop questions need num_{what} >= num_choices")
    if self.num_cities < self.num_countries or self.num_countries < self.num_continents:
      raise ValueError("need num_cities >= num_countries >= num_continents")
    if self.rationales_per_question < 1 or self.train_questions_per_entity < 1:
      raise ValueError("rationales_per_question and train_questions_per_entity must be >= 1")

  def to_json(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["hops"] = list(self.hops)
    return out


@dataclasses.dataclass(frozen=True)
class _Question:
  subject_kind: str
  subject: int
  relation: str


@dataclasses.dataclass(frozen=True)
class Benchmark:
  splits: dict[str, list[Example]]
  passages: list[dict[str, str]]
  rationales: list[Rationale]
  world: World  # the entities and facts everything above was written from


def _chain(world: World, q: _Question) -> list[tuple[str, str, str]]:
  """The facts a question uses, as (link, passage id of the fact, fact's object name) per hop."""
  kind, hops, link, answer_type, _ = _QUESTIONS[q.relation]
  if kind == "person":
    person = world.people[q.subject]
    city = person.born if link == "born" else person.lives
  else:
    city = world.companies[q.subject].hq
  country = world.city_country[city]
  steps = [(link, World.pid(kind, q.subject), world.cities[city])]
  if hops >= 2:
    steps.append(("country", World.pid("city", city), world.countries[country]))
  if hops == 3:
    if answer_type == "continent":
      steps.append(("continent", World.pid("country", country),
                    world.continents[world.country_continent[country]]))
    else:
      steps.append(("language", World.pid("country", country), world.languages[country]))
  return steps


def _subject_name(world: World, q: _Question) -> str:
  if q.subject_kind == "person":
    return world.people[q.subject].name
  return world.companies[q.subject].name


def _type_values(world: World, answer_type: str) -> list[str]:
  return {"city": world.cities, "country": world.countries, "continent": world.continents,
          "language": world.languages}[answer_type]


class _Namesakes:
  """Entities sharing a name part with each entity (the readers' likely mix-ups)."""

  def __init__(self, world: World):
    self._world = world
    self._people: dict[str, list[int]] = {}
    for j, p in enumerate(world.people):
      self._people.setdefault(f"g:{p.given}", []).append(j)
      self._people.setdefault(f"f:{p.family}", []).append(j)
    self._companies: dict[str, list[int]] = {}
    for j, c in enumerate(world.companies):
      self._companies.setdefault(c.stem, []).append(j)

  def confusers(self, q: _Question) -> list[_Question]:
    """Questions whose answers a careless reader would give: other relation, namesakes."""
    kind, _, link, _, _ = _QUESTIONS[q.relation]
    if kind == "person":
      me = self._world.people[q.subject]
      other = q.relation.replace(link, "lives" if link == "born" else "born", 1)
      out = [_Question("person", q.subject, other)]
      near = self._people[f"g:{me.given}"] + self._people[f"f:{me.family}"]
      near += [] if me.mention is None else [me.mention]
    else:
      me = self._world.companies[q.subject]
      out = []
      near = self._companies[me.stem] + ([] if me.rival is None else [me.rival])
    for j in sorted(set(near) - {q.subject}):
      out.append(_Question(kind, j, q.relation))
    return out


def _choices(rng: random.Random, world: World, namesakes: _Namesakes, q: _Question,
             config: SyntheticConfig, position: int) -> tuple[tuple[Choice, ...], str]:
  """`num_choices` values of the answer's type, the answer at `position`."""
  answer = _chain(world, q)[-1][2]
  values = _type_values(world, _QUESTIONS[q.relation][3])
  picked = [answer]
  if rng.random() < config.distractor_difficulty:
    hard = [_chain(world, c)[-1][2] for c in namesakes.confusers(q)]
    for value in hard[:1] + rng.sample(hard[1:], len(hard) - 1):
      if value not in picked and len(picked) < (config.num_choices + 1) // 2 + 1:
        picked.append(value)
  rest = [v for v in values if v not in picked]
  picked += rng.sample(rest, config.num_choices - len(picked))
  distractors = picked[1:]
  rng.shuffle(distractors)
  picked = distractors[:position] + [answer] + distractors[position:]
  labels = [chr(ord("A") + i) for i in range(config.num_choices)]
  return tuple(Choice(l, v) for l, v in zip(labels, picked)), labels[position]


def _subject_pronoun(world: World, q: _Question) -> str:
  if q.subject_kind == "person":
    return "She" if world.people[q.subject].female else "He"
  return "It"


def _rationales(rng: random.Random, world: World, q: _Question, answer: str, n: int,
                subject: str = "name") -> list[str]:
  """Up to `n` distinct surface variants of the chain of facts, ending with the answer (its
  label or its text); the subject named by its name or (subject="pronoun") a pronoun."""
  steps = _chain(world, q)
  first = _subject_name(world, q) if subject == "name" else _subject_pronoun(world, q)
  subjects = [first] + [s[2] for s in steps[:-1]]
  out: list[str] = []
  for _ in range(8 * n):
    sentences = []
    for (link, _, obj), subj in zip(steps, subjects):
      template = rng.choice(_SAY_LINK[link])
      sentences.append(template.format(a=subj, b=obj))
    text = " ".join(sentences + [f"So, the answer is {answer}."])
    if text not in out:
      out.append(text)
    if len(out) == n:
      break
  return out


def _relations_for(kind: str, hops: Sequence[int]) -> list[str]:
  return [r for r, spec in _QUESTIONS.items() if spec[0] == kind and spec[1] in hops]


def _relation_order(rng: random.Random, kind: str, hops: Sequence[int]) -> list[str]:
  """A subject's relations in random order, alternating hop counts so both stay balanced."""
  groups = [[r for r in _relations_for(kind, (h,))] for h in sorted(set(hops))]
  for g in groups:
    rng.shuffle(g)
  rng.shuffle(groups)
  out = []
  while any(groups):
    for g in groups:
      if g:
        out.append(g.pop())
  return out


def _split_subjects(rng: random.Random, world: World, config: SyntheticConfig):
  subjects = [("person", i) for i in range(len(world.people))]
  subjects += [("company", i) for i in range(len(world.companies))]
  rng.shuffle(subjects)
  n_unseen = round(config.unseen_share * len(subjects))
  unseen, train = subjects[:n_unseen], subjects[n_unseen:]
  eval_total = max(config.num_validation + config.num_test, 1)
  n_val = round(len(unseen) * config.num_validation / eval_total)
  return train, unseen[:n_val], unseen[n_val:]


def _spread_questions(rng: random.Random, pool: list[tuple[str, int]], count: int,
                      hops: Sequence[int], exclude: set[_Question]) -> list[_Question]:
  """`count` questions over `pool`, one relation per subject per round, so subjects vary."""
  todo: dict[tuple[str, int], list[str]] = {}
  out: list[_Question] = []
  while len(out) < count:
    before = len(out)
    for s in pool:
      if len(out) == count:
        break
      if s not in todo:  # ordered on first visit, so large pools cost only what is used
        todo[s] = [r for r in _relation_order(rng, s[0], hops)
                   if _Question(s[0], s[1], r) not in exclude]
      if todo[s]:
        out.append(_Question(s[0], s[1], todo[s].pop(0)))
    if len(out) == before:
      break
  return out


def generate(config: SyntheticConfig) -> Benchmark:
  """The whole benchmark in memory: splits of examples, KB passages and teacher rationales."""
  root = f"kard-synthetic:{config.seed}"
  n_companies = round(config.company_share * config.num_entities)
  world = build_world(random.Random(f"{root}:world"), num_people=config.num_entities - n_companies,
                      num_companies=n_companies, num_cities=config.num_cities,
                      num_countries=config.num_countries, num_continents=config.num_continents,
                      difficulty=config.distractor_difficulty)
  passages = kb_passages(random.Random(f"{root}:kb"), world)

  rng = random.Random(f"{root}:questions")
  train_subjects, val_unseen, test_unseen = _split_subjects(rng, world, config)
  train_qs: list[_Question] = []
  for kind, i in train_subjects:
    picked = _relation_order(rng, kind, config.hops)[:config.train_questions_per_entity]
    train_qs += [_Question(kind, i, r) for r in picked]
  asked = set(train_qs)
  n_seen = {s: round(config.seen_share * n)
            for s, n in (("validation", config.num_validation), ("test", config.num_test))}
  if config.seen_questions == "asked":
    repeated = rng.sample(train_qs, min(len(train_qs), n_seen["validation"] + n_seen["test"]))
    val_seen, test_seen = repeated[:n_seen["validation"]], repeated[n_seen["validation"]:]
  else:
    val_seen = _spread_questions(rng, train_subjects, n_seen["validation"], config.hops, asked)
    test_seen = _spread_questions(rng, train_subjects, n_seen["test"], config.hops,
                                  asked | set(val_seen))
  plan = {
      "train": [(q, "seen") for q in train_qs],
      "validation": [(q, "seen") for q in val_seen] + [(q, "unseen") for q in _spread_questions(
          rng, val_unseen, config.num_validation - len(val_seen), config.hops, set())],
      "test": [(q, "seen") for q in test_seen] + [(q, "unseen") for q in _spread_questions(
          rng, test_unseen, config.num_test - len(test_seen), config.hops, set())],
  }

  namesakes = _Namesakes(world)
  splits: dict[str, list[Example]] = {}
  rationales: list[Rationale] = []
  for split, items in plan.items():
    rng.shuffle(items)
    # Gold positions are exactly balanced over the labels, in random order.
    positions = [k % config.num_choices for k in range(len(items))]
    rng.shuffle(positions)
    examples = []
    for k, (q, entity_split) in enumerate(items):
      choices, label = _choices(rng, world, namesakes, q, config, positions[k])
      steps = _chain(world, q)
      name = _subject_name(world, q)
      example = Example(
          id=f"synthetic-{split}-{k:05d}",
          question=rng.choice(_QUESTIONS[q.relation][4]).format(s=name),
          choices=choices, answer=label,
          extra={"entity_split": entity_split, "hops": len(steps), "relation": q.relation,
                 "subject": name, "chain": [name] + [s[2] for s in steps],
                 "gold_passages": [s[1] for s in steps]})
      if config.answer_format == "text":
        example.extra["answer_format"] = "text"
      examples.append(example)
      if split == "train":
        for sample, text in enumerate(_rationales(rng, world, q, answer_phrase(example),
                                                  config.rationales_per_question,
                                                  config.rationale_subject)):
          rationales.append(Rationale(example.id, sample, text, label, TEACHER,
                                      {"variants": config.rationales_per_question}))
    splits[split] = examples
  return Benchmark(splits, passages, rationales, world)


def write_benchmark(config: SyntheticConfig, out_dir) -> dict[str, Any]:
  """Writes the prepared layout and manifest.json under `out_dir`; returns the manifest.

  Files: examples/{train,validation,test}.jsonl, kb/passages.jsonl, rationales/train.jsonl.
  """
  bench = generate(config)
  out_dir = os.fspath(out_dir)
  for split, examples in bench.splits.items():
    write_examples(os.path.join(out_dir, "examples", f"{split}.jsonl"), examples)
  jsonl.write_jsonl(os.path.join(out_dir, "kb", "passages.jsonl"), bench.passages)
  write_rationales(os.path.join(out_dir, "rationales", "train.jsonl"), bench.rationales)
  counts: dict[str, Any] = {split: len(ex) for split, ex in bench.splits.items()}
  counts["passages"] = len(bench.passages)
  counts["rationales"] = len(bench.rationales)
  for split in ("validation", "test"):
    counts[f"{split}_unseen"] = sum(ex.extra["entity_split"] == "unseen"
                                    for ex in bench.splits[split])
  manifest = {"benchmark": "synthetic", "generator": __name__, "version": VERSION,
              "config": config.to_json(), "counts": counts}
  with jsonl.atomic_open(os.path.join(out_dir, "manifest.json")) as f:
    f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
  return manifest
