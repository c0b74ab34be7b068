"""Few-shot chain-of-thought exemplars, written for this project, one set per benchmark.

Each exemplar is a question in its benchmark's normalised form (choices labelled A, B, ...;
StrategyQA as A "yes" / B "no", as the loaders produce) with an explanation that states the
knowledge needed, in order, and reasons to the answer. The closing sentence comes from
`answers.answer_statement`, so the teacher is shown exactly the ending that `parse_answer` reads
and that students are trained to produce. The synthetic set uses invented entities in the style of
the synthetic knowledge base (no real-world knowledge helps there).

Users with their own exemplars pass a JSON-lines file to `load_exemplars`: `Example` lines plus an
"explanation" field (with or without the closing answer sentence).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from kard_jax.data import jsonl
from kard_jax.data.answers import answer_statement, parse_answer
from kard_jax.data.errors import InputError
from kard_jax.data.example import Choice, Example, validate


@dataclasses.dataclass(frozen=True)
class Exemplar:
  question: str
  choices: tuple[Choice, ...]
  answer: str
  explanation: str  # the reasoning, normally without the closing answer sentence
  close: bool = True  # append the answer statement (False: the explanation already ends with one)

  @property
  def answer_choice(self) -> Choice:
    return next(c for c in self.choices if c.label == self.answer)

  @property
  def rationale(self) -> str:
    """The full rationale a teacher should write: explanation, then the answer statement."""
    if not self.close:
      return self.explanation.strip()
    return f"{self.explanation.strip()} {answer_statement(self.answer_choice)}"


def _abcd(*texts: str) -> tuple[Choice, ...]:
  return tuple(Choice(chr(ord("A") + i), t) for i, t in enumerate(texts))


_YES_NO = _abcd("yes", "no")

MEDQA = (
    Exemplar(
        "A 23-year-old woman comes to the emergency department with a 2-day history of fever, "
        "chills, painful urination and right-sided back pain. Her temperature is 39.2°C "
        "(102.6°F). There is tenderness at the right costovertebral angle. Urinalysis shows "
        "numerous leukocytes and white blood cell casts. Which of the following is the most "
        "likely diagnosis?",
        _abcd("Acute cystitis", "Acute pyelonephritis", "Nephrolithiasis",
              "Acute poststreptococcal glomerulonephritis"), "B",
        "Fever, flank pain and costovertebral angle tenderness point to an infection of the upper "
        "urinary tract rather than the bladder alone. White blood cell casts form inside renal "
        "tubules, so their presence places the inflammation in the kidney itself. Acute cystitis "
        "causes painful urination but neither fever with flank tenderness nor casts. A kidney "
        "stone causes colicky pain and blood in the urine, not white cell casts, and "
        "glomerulonephritis produces red blood cell casts. The picture is an ascending infection "
        "of the kidney, acute pyelonephritis."),
    Exemplar(
        "A 64-year-old man with a 50 pack-year smoking history has had fatigue and confusion for "
        "two weeks. His serum sodium is 121 mEq/L and serum osmolality is low, while his urine is "
        "inappropriately concentrated. He is euvolemic. A chest CT shows a large central mass near "
        "the hilum of the right lung. Which type of tumor is most likely?",
        _abcd("Squamous cell carcinoma", "Adenocarcinoma", "Small cell carcinoma",
              "Bronchial carcinoid tumor"), "C",
        "Low sodium with low serum osmolality, concentrated urine and normal volume status is the "
        "syndrome of inappropriate antidiuretic hormone secretion (SIADH). The lung cancer that "
        "classically secretes ADH ectopically is small cell carcinoma, which arises centrally near "
        "the hilum and is strongly linked to smoking. Squamous cell carcinoma is also central but "
        "is associated with hypercalcemia from PTHrP, adenocarcinoma is usually peripheral, and a "
        "carcinoid tumor is associated with carcinoid syndrome rather than SIADH."),
    Exemplar(
        "A 70-year-old woman with atrial fibrillation has taken warfarin for years with a stable "
        "INR of 2.5. Ten days after she starts a new medication, her INR is 5.8 and she has "
        "bruising on her arms. Which of the following medications did she most likely start?",
        _abcd("Rifampin", "Carbamazepine", "St. John's wort", "Fluconazole"), "D",
        "Warfarin is cleared mainly by the liver enzyme CYP2C9, so a drug that inhibits that "
        "enzyme raises warfarin levels, prolongs the INR and causes bleeding. Fluconazole is a "
        "potent inhibitor of CYP2C9. Rifampin, carbamazepine and St. John's wort all induce "
        "cytochrome P450 enzymes, which would speed up warfarin breakdown and lower the INR."),
    Exemplar(
        "A 5-year-old boy is brought to the physician because of swelling around his eyes for one "
        "week. He had an upper respiratory infection two weeks ago. Urinalysis shows 4+ protein "
        "and no blood; 24-hour urine protein is 3.9 g. Serum albumin is low and creatinine is "
        "normal. A renal biopsy would most likely show which of the following on electron "
        "microscopy?",
        _abcd("Effacement of podocyte foot processes", "Subepithelial immune complex deposits",
              "Splitting of the glomerular basement membrane", "Mesangial IgA deposits"), "A",
        "Heavy proteinuria above 3.5 g a day, low albumin and edema without blood in the urine is "
        "the nephrotic syndrome. In a young child with normal kidney function the most common "
        "cause is minimal change disease, which can follow an infection. Its glomeruli look normal "
        "under light microscopy, and electron microscopy shows effacement of the podocyte foot "
        "processes. Subepithelial deposits suggest membranous nephropathy or post-infectious "
        "glomerulonephritis, a split basement membrane Alport syndrome, and mesangial IgA deposits "
        "IgA nephropathy, which presents with blood in the urine."),
)

STRATEGYQA = (
    Exemplar(
        "Would a person weigh more standing on the Moon than on Earth?", _YES_NO, "B",
        "Weight is the force of gravity on a body's mass. Gravity at the Moon's surface is about "
        "one sixth of Earth's, and a person's mass does not change on the trip. A person standing "
        "on the Moon therefore weighs about one sixth of what they weigh on Earth, which is less, "
        "not more."),
    Exemplar(
        "Could the Titanic have called for help by radio?", _YES_NO, "A",
        "The Titanic sank in April 1912. It carried a Marconi wireless telegraph, and its "
        "operators sent distress signals, CQD and SOS, that were picked up by the Carpathia, which "
        "came to rescue the survivors. So the ship did have a radio and used it to call for help."),
    Exemplar(
        "Would a vegan eat a traditional Caesar salad?", _YES_NO, "B",
        "Vegans eat no animal products. A traditional Caesar salad dressing is made with egg yolk, "
        "Parmesan cheese and anchovies or Worcestershire sauce, which contains anchovies. All of "
        "these come from animals, so a vegan would not eat a traditional Caesar salad."),
    Exemplar(
        "Is the Pacific Ocean larger than all of Earth's land put together?", _YES_NO, "A",
        "The Pacific Ocean covers about 165 million square kilometers. All the land on Earth "
        "together covers about 149 million square kilometers. Since 165 million is more than "
        "149 million, the Pacific alone is larger than all the land."),
    Exemplar(
        "Did Albert Einstein ever send a text message?", _YES_NO, "B",
        "Albert Einstein died in 1955. The first text message was sent in 1992, and mobile phones "
        "that could send texts only became common in the late 1990s. Einstein died decades before "
        "text messages existed, so he never sent one."),
)

OBQA = (
    Exemplar(
        "Which of these would let the most light pass through?",
        _abcd("a wooden door", "a clear glass window", "a brick wall", "a sheet of aluminum foil"),
        "B",
        "Light passes through transparent materials and is blocked by opaque ones. Clear glass is "
        "transparent, while wood, brick and metal foil are opaque. So the clear glass window lets "
        "the most light through."),
    Exemplar(
        "A plant kept in a dark closet for several weeks will most likely",
        _abcd("grow faster", "turn a darker green", "wilt and turn pale", "produce more flowers"),
        "C",
        "Plants make their food by photosynthesis, which needs sunlight. Without light a plant "
        "cannot make food or keep producing the green pigment chlorophyll, so it weakens, loses "
        "its color and wilts."),
    Exemplar(
        "What causes the seasons on Earth?",
        _abcd("the tilt of Earth's axis as it orbits the Sun",
              "the changing distance between Earth and the Sun", "the phases of the Moon",
              "Earth spinning on its axis"), "A",
        "Earth's axis is tilted, so as Earth orbits the Sun each hemisphere spends part of the "
        "year tipped toward the Sun, getting more direct sunlight and longer days, and part "
        "tipped away. That is what makes summer and winter. The distance to the Sun changes very "
        "little, the Moon's phases do not change how much sunlight reaches Earth, and Earth's "
        "spin causes day and night, not seasons."),
    Exemplar(
        "Which of these is a good conductor of electricity?",
        _abcd("a rubber band", "a plastic spoon", "a wool sock", "a copper wire"), "D",
        "Electricity flows easily through metals because they have free electrons. Copper is a "
        "metal, which is why wires are made of it. Rubber, plastic and wool are insulators that "
        "block the flow of electricity."),
)

ARC = (
    Exemplar(
        "Which process changes water vapor into liquid water?",
        _abcd("evaporation", "condensation", "freezing", "melting"), "B",
        "Water vapor is water in the gas state. When the gas cools, it turns into liquid droplets; "
        "this change from gas to liquid is condensation. Evaporation goes the other way, from "
        "liquid to gas, freezing turns liquid into solid, and melting turns solid into liquid."),
    Exemplar(
        "A block has a mass of 200 grams and a volume of 100 cubic centimeters. What is the "
        "density of the block?",
        _abcd("0.5 g/cm³", "100 g/cm³", "2 g/cm³", "300 g/cm³"), "C",
        "Density is mass divided by volume. Here that is 200 g divided by 100 cm³, which is "
        "2 g/cm³."),
    Exemplar(
        "Which organism is a producer in a meadow food chain?",
        _abcd("grass", "rabbit", "fox", "mushroom"), "A",
        "A producer makes its own food, usually from sunlight by photosynthesis. Grass is a green "
        "plant, so it is a producer. Rabbits and foxes are consumers that eat other organisms, and "
        "a mushroom is a fungus, a decomposer that feeds on dead material."),
    Exemplar(
        "A geologist scratches a mineral sample with a steel nail to see whether it leaves a "
        "mark. Which property of the mineral is being tested?",
        _abcd("color", "luster", "streak", "hardness"), "D",
        "Hardness is how well a mineral resists being scratched. Testing whether a steel nail can "
        "scratch the sample compares its hardness with that of steel. Color and luster are seen "
        "by looking at the mineral, and streak is the color of its powder when rubbed on a "
        "porcelain plate."),
)

SYNTHETIC = (
    Exemplar(
        "In which country was Ilsa Drovenk born?",
        _abcd("Marovia", "Tessaly", "Quenth", "Brudavia"), "C",
        "Ilsa Drovenk was born in Kaldor. Kaldor is a city in Quenth."),
    Exemplar(
        "On which continent is Zeltha Forge headquartered?",
        _abcd("Osterra", "Vailun", "Nordhaim", "Sudrel"), "B",
        "Zeltha Forge is headquartered in Pelmora. Pelmora is a city in Grathia. Grathia is a "
        "country in Vailun."),
    Exemplar(
        "Which language is spoken in the country where Tovan Meskel lives?",
        _abcd("Brekish", "Ulmese", "Dravic", "Sorran"), "A",
        "Tovan Meskel lives in Virelle. Virelle is a city in Brekland. The people of Brekland "
        "speak Brekish."),
    Exemplar(
        "Sorvik Labs has its headquarters in which country?",
        _abcd("Kestrany", "Ombria", "Zalmoria", "Thessin"), "D",
        "Sorvik Labs is headquartered in Ostvale. Ostvale is a city in Thessin."),
)

EXEMPLARS: dict[str, tuple[Exemplar, ...]] = {
    "medqa": MEDQA,
    "strategyqa": STRATEGYQA,
    "obqa": OBQA,
    "arc": ARC,
    "arc_easy": ARC,
    "arc_challenge": ARC,
    "synthetic": SYNTHETIC,
}


def exemplars_for(benchmark: str) -> tuple[Exemplar, ...]:
  if benchmark not in EXEMPLARS:
    raise ValueError(f"no built-in exemplars for benchmark {benchmark!r} (have "
                     f"{', '.join(sorted(EXEMPLARS))}); pass an exemplar file instead")
  return EXEMPLARS[benchmark]


def check(exemplars: Sequence[Exemplar], where: str = "exemplars") -> None:
  """Each rationale must parse back to its own answer, or the teacher learns the wrong ending."""
  for i, ex in enumerate(exemplars):
    got = parse_answer(ex.rationale, ex.choices)
    if got != ex.answer:
      raise ValueError(f"{where}[{i}]: rationale parses to {got!r}, not {ex.answer!r}")


def load_exemplars(path) -> tuple[Exemplar, ...]:
  """Reads user exemplars: `Example` JSON lines with an "explanation" field."""
  out = []
  for line, obj in jsonl.iter_jsonl(path):
    text = obj.get("explanation")
    if not isinstance(text, str) or not text.strip():
      raise InputError(path, "missing field 'explanation'", line)
    try:
      ex = validate(Example.from_json(obj), path, line)
    except (KeyError, TypeError) as e:
      raise InputError(path, f"malformed exemplar ({e})", line) from None
    # An explanation that already states its answer is used as written.
    stated = parse_answer(text, ex.choices)
    if stated is not None and stated != ex.answer:
      raise InputError(path, f"explanation concludes {stated!r} but the answer is {ex.answer!r}",
                       line)
    close = stated is None
    out.append(Exemplar(ex.question, ex.choices, ex.answer, text, close))
  if not out:
    raise InputError(path, "no exemplars in file")
  check(out, str(path))
  return tuple(out)
