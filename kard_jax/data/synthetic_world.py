"""The fictional world behind the synthetic benchmark: invented entities and their KB passages.

Two kinds of entity, on purpose:
  long tail  people and companies: many, each with its own facts (born in / lives in / works at a
             city or company; headquartered in a city). These are what a small model cannot
             memorise, so questions are asked about them.
  head       cities, countries, continents and languages: few, shared by many long-tail entities,
             so every later hop of a question (city -> country -> continent / language) recurs
             across training rationales and can be learnt.
Names are built from syllables and each holds a cluster English avoids ("zh", "vr", "kr", "aa",
"ii", "uu"), so none is a real word or a real place. With `sharing` > 1 several people share a
given or a family name and several companies a stem, and some passages mention a namesake
("She is a cousin of Ilsa Kessel."), so a question's name tokens also occur in other passages:
question-only BM25 cannot tell them apart, a reranker reading the name as a unit can.

Every choice is drawn from an explicit `random.Random`, so a world is a pure function of its seed.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Sequence

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "kr", "th", "tr", "vr", "zh")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "aa", "ii", "uu")
# Every name holds one of these, which English words (almost) never do: no name is a real word.
_MARKERS = ("zh", "vr", "kr", "aa", "ii", "uu")
_CODAS = ("", "", "n", "r", "l", "s", "th", "m", "x", "k")
_LANGUAGE_ENDINGS = ("ic", "ish", "ese", "an")
_COMPANY_SUFFIXES = ("Works", "Forge", "Labs", "Mills", "Foundry", "Guild", "Traders", "Holdings")
_PROFESSIONS = ("weaver", "potter", "sailor", "baker", "glassblower", "clockmaker", "farmer",
                "mapmaker", "brewer", "painter", "carpenter", "beekeeper", "tailor", "miner")
_PRODUCTS = ("lamps", "ropes", "bells", "kites", "maps", "lenses", "boots", "barrels", "clocks",
             "paper", "glass", "tiles", "sails", "soap")
_CITY_TRAITS = ("bridges", "markets", "towers", "gardens", "harbour", "festivals", "canals",
                "libraries")

# KB sentence variants. {s}/{S}: subject (lower/upper case at the start), {p}/{P}: possessive.
_PERSON_INTRO = ("{name} is a {prof}.", "{name} works as a {prof}.", "{name} is a {prof} by trade.")
_PERSON_BORN = ("{S} was born in {x}.", "{S} is a native of {x}.", "{P} birthplace is {x}.",
                "{S} was born in the city of {x}.")
_PERSON_LIVES = ("{S} lives in {x}.", "{S} now resides in {x}.", "{P} home is in {x}.",
                 "These days {s} lives in {x}.")
_PERSON_WORKS = ("{S} works at {x}.", "{S} is employed by {x}.", "{P} employer is {x}.")
_PERSON_MENTION = ("{S} is a cousin of {x}.", "{S} often travels with {x}.",
                   "{S} is an old friend of {x}.")
_COMPANY_INTRO = ("{name} is a company that makes {product}.", "{name} is a maker of {product}.",
                  "{name} produces {product}.")
_COMPANY_HQ = ("{S} is headquartered in {x}.", "{P} headquarters are in {x}.",
               "{S} is based in {x}.")
_COMPANY_RIVAL = ("{P} main rival is {x}.", "{S} competes with {x}.")
_CITY = ("{name} is a city in {x}.", "{name} lies in {x}.", "The city of {name} is part of {x}.",
         "{name} is located in {x}.")
_CITY_TRAIT = ("It is known for its {trait}.", "Visitors come for its {trait}.")
_COUNTRY = ("{name} is a country in {x}.", "{name} lies on the continent of {x}.",
            "{name} is part of {x}.")
_COUNTRY_LANGUAGE = ("The people of {name} speak {lang}.", "Its official language is {lang}.",
                     "{lang} is spoken in {name}.")


@dataclasses.dataclass
class Person:
  given: str
  family: str
  female: bool
  profession: str
  born: int  # city index
  lives: int  # city index
  employer: int  # company index
  mention: int | None = None  # person index of a namesake mentioned in the passage

  @property
  def name(self) -> str:
    return f"{self.given} {self.family}"


@dataclasses.dataclass
class Company:
  stem: str
  suffix: str
  product: str
  hq: int  # city index
  rival: int | None = None  # company index

  @property
  def name(self) -> str:
    return f"{self.stem} {self.suffix}"


@dataclasses.dataclass
class World:
  continents: list[str]
  countries: list[str]
  country_continent: list[int]
  languages: list[str]  # languages[i] is spoken in countries[i]
  cities: list[str]
  city_country: list[int]
  city_trait: list[str]
  people: list[Person]
  companies: list[Company]

  # Passage ids: one passage per entity.
  @staticmethod
  def pid(kind: str, index: int) -> str:
    return f"{kind}-{index:04d}"


class NameMaker:
  """Invented, globally unique capitalised words built from syllables."""

  def __init__(self, rng: random.Random):
    self._rng = rng
    self._used: set[str] = set()

  def make(self, syllables: Sequence[int] = (2,), ending: str = "") -> str:
    for _ in range(1000):
      n = self._rng.choice(tuple(syllables))
      parts = [self._rng.choice(_ONSETS) + self._rng.choice(_VOWELS) for _ in range(n)]
      word = "".join(parts) + (ending or self._rng.choice(_CODAS))
      word = word.capitalize()
      low = word.lower()
      if low not in self._used and 4 <= len(word) <= 9 and any(m in low for m in _MARKERS):
        self._used.add(low)
        return word
    raise RuntimeError("ran out of invented names; lower the number of entities")

  def many(self, count: int, **kwargs) -> list[str]:
    return [self.make(**kwargs) for _ in range(count)]


def _spread(rng: random.Random, count: int, buckets: int) -> list[int]:
  """`count` bucket indices covering every bucket at least once (when count >= buckets)."""
  out = [i % buckets for i in range(count)]
  rng.shuffle(out)
  return out


def _namesake_pools(names: list[tuple[str, str]]
                    ) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
  by_first: dict[str, list[int]] = {}
  by_second: dict[str, list[int]] = {}
  for i, (first, second) in enumerate(names):
    by_first.setdefault(first, []).append(i)
    by_second.setdefault(second, []).append(i)
  return by_first, by_second


def _pick_confuser(rng: random.Random, i: int, names: list[tuple[str, str]],
                   by_first: dict[str, list[int]], by_second: dict[str, list[int]]) -> int | None:
  """An entity R for i's passage to mention so that it holds both name tokens of some Q != i.

  i shares its first token with Q; R shares its second token with Q. Question-only BM25 for Q then
  scores i's passage about as high as Q's own.
  """
  twins = [q for q in by_first[names[i][0]] if q != i]
  rng.shuffle(twins)
  for q in twins:
    others = [r for r in by_second[names[q][1]] if r not in (i, q)]
    if others:
      return rng.choice(others)
  return None


def build_world(rng: random.Random, *, num_people: int, num_companies: int, num_cities: int,
                num_countries: int, num_continents: int, difficulty: float) -> World:
  """Samples the entities, their facts and (with `difficulty` > 0) namesakes and confusers."""
  names = NameMaker(rng)
  continents = names.many(num_continents)
  countries = names.many(num_countries)
  languages = [names.make(syllables=(1, 2), ending=rng.choice(_LANGUAGE_ENDINGS))
               for _ in range(num_countries)]
  cities = names.many(num_cities)
  country_continent = _spread(rng, num_countries, num_continents)
  city_country = _spread(rng, num_cities, num_countries)
  city_trait = [rng.choice(_CITY_TRAITS) for _ in cities]

  # Each given / family name / company stem is shared by about `sharing` entities.
  sharing = 1 + round(3 * difficulty)
  people_names = _two_part_names(rng, names, num_people, sharing, None)
  company_names = _two_part_names(rng, names, num_companies, sharing, _COMPANY_SUFFIXES)

  people = []
  for given, family in people_names:
    born = rng.randrange(num_cities)
    lives = rng.choice([c for c in range(num_cities) if c != born])
    people.append(Person(given, family, rng.random() < 0.5, rng.choice(_PROFESSIONS), born, lives,
                         rng.randrange(max(num_companies, 1))))
  companies = [Company(stem, suffix, rng.choice(_PRODUCTS), rng.randrange(num_cities))
               for stem, suffix in company_names]

  by_first, by_second = _namesake_pools(people_names)
  for i, person in enumerate(people):
    if rng.random() < difficulty:
      person.mention = _pick_confuser(rng, i, people_names, by_first, by_second)
  by_first, by_second = _namesake_pools(company_names)
  for i, company in enumerate(companies):
    if rng.random() < difficulty:
      company.rival = _pick_confuser(rng, i, company_names, by_first, by_second)
  return World(continents, countries, country_continent, languages, cities, city_country,
               city_trait, people, companies)


def _two_part_names(rng: random.Random, names: NameMaker, count: int, sharing: int,
                    suffixes: Sequence[str] | None) -> list[tuple[str, str]]:
  """`count` unique (first, second) pairs whose parts each recur about `sharing` times."""
  if count == 0:
    return []
  n_first = max(1, -(-count // sharing))
  firsts = names.many(n_first)
  if suffixes is None:
    seconds = names.many(max(2, -(-count // sharing)))
  else:
    seconds = list(suffixes)
  # Enough distinct pairs are needed; grow the first-name pool if not.
  while n_first * len(seconds) < 2 * count:
    firsts.append(names.make())
    n_first += 1
  # Each first part is used at most ceil(count / n_first) <= len(seconds) / 2 times, so at least
  # half the second parts are free: rejection sampling ends quickly.
  out, used = [], set()
  for f in _spread(rng, count, n_first):
    pair = (firsts[f], rng.choice(seconds))
    while pair in used:
      pair = (firsts[f], rng.choice(seconds))
    used.add(pair)
    out.append(pair)
  return out


def _subject_forms(rng: random.Random, pronoun: str, possessive: str, noun: str) -> dict[str, str]:
  """Pronoun or "the <noun>" for the sentences after a passage's first (which names it)."""
  if rng.random() < 0.7:
    return {"S": pronoun, "s": pronoun.lower(), "P": possessive}
  return {"S": f"The {noun}", "s": f"the {noun}", "P": f"The {noun}'s"}


def _say(rng: random.Random, templates: Sequence[str], **fields: str) -> str:
  return rng.choice(templates).format(**fields)


def person_passage(rng: random.Random, world: World, i: int) -> str:
  p = world.people[i]
  forms = _subject_forms(rng, "She" if p.female else "He", "Her" if p.female else "His",
                         p.profession)
  facts = [_say(rng, _PERSON_BORN, x=world.cities[p.born], **forms),
           _say(rng, _PERSON_LIVES, x=world.cities[p.lives], **forms)]
  if world.companies:
    facts.append(_say(rng, _PERSON_WORKS, x=world.companies[p.employer].name, **forms))
  if p.mention is not None:
    facts.append(_say(rng, _PERSON_MENTION, x=world.people[p.mention].name, **forms))
  rng.shuffle(facts)
  return " ".join([_say(rng, _PERSON_INTRO, name=p.name, prof=p.profession)] + facts)


def company_passage(rng: random.Random, world: World, i: int) -> str:
  c = world.companies[i]
  forms = _subject_forms(rng, "It", "Its", "company")
  facts = [_say(rng, _COMPANY_HQ, x=world.cities[c.hq], **forms)]
  if c.rival is not None:
    facts.append(_say(rng, _COMPANY_RIVAL, x=world.companies[c.rival].name, **forms))
  rng.shuffle(facts)
  return " ".join([_say(rng, _COMPANY_INTRO, name=c.name, product=c.product)] + facts)


def kb_passages(rng: random.Random, world: World) -> list[dict[str, str]]:
  """One short passage per entity, `{"id", "title", "text"}`, in a fixed order."""
  out = []
  for i, name in enumerate(world.continents):
    members = [c for j, c in enumerate(world.countries) if world.country_continent[j] == i]
    listed = ", ".join(members[:-1]) + " and " + members[-1] if len(members) > 1 else members[0]
    text = f"{name} is a continent. Its countries include {listed}."
    out.append({"id": World.pid("continent", i), "title": name, "text": text})
  for i, name in enumerate(world.countries):
    text = " ".join([
        _say(rng, _COUNTRY, name=name, x=world.continents[world.country_continent[i]]),
        _say(rng, _COUNTRY_LANGUAGE, name=name, lang=world.languages[i])])
    out.append({"id": World.pid("country", i), "title": name, "text": text})
  for i, name in enumerate(world.cities):
    text = " ".join([_say(rng, _CITY, name=name, x=world.countries[world.city_country[i]]),
                     _say(rng, _CITY_TRAIT, trait=world.city_trait[i])])
    out.append({"id": World.pid("city", i), "title": name, "text": text})
  for i, company in enumerate(world.companies):
    out.append({"id": World.pid("company", i), "title": company.name,
                "text": company_passage(rng, world, i)})
  for i, person in enumerate(world.people):
    out.append({"id": World.pid("person", i), "title": person.name,
                "text": person_passage(rng, world, i)})
  return out
