"""The T5X gin files parse, follow T5X's rules (shared/T5X_NOTES.md) and name registered tasks.

T5X is not installed, so the files are read with gin's own parser (syntax, imports, includes,
bindings) without importing the modules they name; what can be checked here without T5X is:
  * every file opens with `from __gin__ import dynamic_registration` and imports every module
    its bindings and references name;
  * train / eval / infer files include the matching T5X run gin, after a model gin and before
    the shared task file, and the shared file binds nothing from __main__ and includes no run
    gin, so all three entry points can include it;
  * the macros T5X's run gins leave REQUIRED are set, and USE_CACHED_TASKS is off;
  * bindings to our own configurables name real parameters (T5Config / GPTConfig fields);
  * every task or mixture a file (or its usage comment) names is registered after `import tasks`,
    and the vocabulary bound to the model is the task's own.
"""

from __future__ import annotations

import dataclasses
import os
import inspect
import pathlib
import re
import shlex

import pytest
import gin
from gin import config_parser


REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
T5X_DIR = REPO_ROOT / "gin_configs" / "t5x"
SHARED = "gin_configs/t5x/kard_task.gin"
RUN_GINS = {"train": ("t5x/configs/runs/pretrain.gin", "t5x/configs/runs/finetune.gin"),
            "eval": ("t5x/configs/runs/eval.gin",),
            "infer": ("t5x/configs/runs/infer.gin",)}
T5X_MODEL_GINS = ("t5x/examples/t5/t5_1_1/base.gin", "t5x/examples/t5/t5_1_1/large.gin",
                  "t5x/examples/t5/t5_1_1/xl.gin")
# Macros T5X's run gins declare %gin.REQUIRED (beyond MODEL, which the model gin defines).
REQUIRED = {"train": {"MIXTURE_OR_TASK_NAME", "TASK_FEATURE_LENGTHS", "TRAIN_STEPS",
                      "DROPOUT_RATE", "VOCABULARY", "MODEL"},
            "eval": {"MIXTURE_OR_TASK_NAME", "DROPOUT_RATE", "VOCABULARY", "MODEL"},
            "infer": {"MIXTURE_OR_TASK_NAME", "TASK_FEATURE_LENGTHS", "DROPOUT_RATE",
                      "VOCABULARY", "MODEL"}}


class _Recorder(config_parser.ParserDelegate):
  def __init__(self):
    self.references: list[str] = []
    self.macros: list[str] = []

  def configurable_reference(self, scoped_configurable_name, evaluate):
    self.references.append(scoped_configurable_name)
    return ("@", scoped_configurable_name, evaluate)

  def macro(self, macro_name):
    self.macros.append(macro_name)
    return ("%", macro_name)


@dataclasses.dataclass
class GinFile:
  path: pathlib.Path
  text: str
  imports: list[config_parser.ImportStatement]
  includes: list[str]
  bindings: list[config_parser.BindingStatement]
  references: list[str]

  @property
  def aliases(self) -> dict[str, str]:
    return {s.bound_name(): s.module for s in self.imports}

  def macros(self) -> dict[str, object]:
    return {b.selector: b.value for b in self.bindings if "." not in b.selector and not b.arg_name}

  def configurable_bindings(self) -> list[config_parser.BindingStatement]:
    return [b for b in self.bindings if "." in b.selector]


def parse(path: pathlib.Path) -> GinFile:
  text = path.read_text()
  recorder = _Recorder()
  imports, includes, bindings = [], [], []
  for statement in config_parser.ConfigParser(text, recorder):
    if isinstance(statement, config_parser.ImportStatement):
      imports.append(statement)
    elif isinstance(statement, config_parser.IncludeStatement):
      includes.append(statement.filename)
    elif isinstance(statement, config_parser.BindingStatement):
      bindings.append(statement)
  return GinFile(path, text, imports, includes, bindings, recorder.references)


def gin_files() -> list[pathlib.Path]:
  return sorted(T5X_DIR.glob("*.gin"))


def kind(path: pathlib.Path) -> str | None:
  stem = path.stem
  for name, suffixes in (("train", ("_train", "_finetune")), ("eval", ("_eval",)),
                         ("infer", ("_infer",))):
    if stem.endswith(suffixes):
      return name
  return None


def flattened(path: pathlib.Path) -> dict[str, object]:
  """Macros after the project's own includes are expanded, last assignment winning."""
  gin = parse(path)
  macros: dict[str, object] = {}
  for include in gin.includes:
    if include.startswith("gin_configs/"):
      macros.update(flattened(REPO_ROOT / include))
  macros.update(gin.macros())
  return macros


def test_the_expected_files_exist():
  names = {p.name for p in gin_files()}
  for family in ("flan_t5", "kard_t5", "kard_gpt"):
    for suffix in ("eval", "infer"):
      assert f"{family}_{suffix}.gin" in names
  assert {"flan_t5_finetune.gin", "kard_t5_train.gin", "kard_gpt_train.gin",
          "kard_task.gin", "kard_t5_model.gin", "kard_gpt_model.gin"} <= names


@pytest.mark.parametrize("path", gin_files(), ids=lambda p: p.name)
def test_dynamic_registration_and_imports(path):
  gin = parse(path)
  assert gin.imports, f"{path.name} imports nothing"
  first = gin.imports[0]
  assert (first.module, first.is_from) == ("__gin__.dynamic_registration", True)
  assert gin.text.lstrip().splitlines()[0].startswith("#"), "start with the command that runs it"
  first_code = next(l for l in gin.text.splitlines() if l.strip() and not l.startswith("#"))
  assert first_code.strip() == "from __gin__ import dynamic_registration"
  aliases = gin.aliases
  for binding in gin.configurable_bindings():
    module = binding.selector.split(".")[0]
    assert module in aliases, f"{path.name}:{binding.location.line_num}: {module} not imported"
  for ref in gin.references:
    name = ref.split("/")[-1]
    if "." in name:
      assert name.split(".")[0] in aliases, f"{path.name}: @{ref} names an unimported module"
  assert "__main__" not in {s.module for s in gin.imports}, \
      "run configs belong to T5X's run gins; ours bind no __main__ configurable"
  for include in gin.includes:
    if include.startswith("gin_configs/"):
      assert (REPO_ROOT / include).is_file(), f"{path.name} includes missing {include}"
    else:
      assert include.startswith("t5x/"), include
      assert include in sum(RUN_GINS.values(), ()) + T5X_MODEL_GINS, include
  assert "seqio.deterministic" not in gin.text and "t5x.tasks" not in gin.text


def test_shared_file_binds_nothing_from_main_and_sets_the_task():
  gin = parse(REPO_ROOT / SHARED)
  assert not any(i.startswith("t5x/configs/runs/") for i in gin.includes)
  assert "tasks" in {s.module for s in gin.imports}, "import tasks inside the gin (rule 7)"
  macros = gin.macros()
  assert macros["MIXTURE_OR_TASK_MODULE"] == "tasks"
  assert macros["USE_CACHED_TASKS"] is False
  lengths = macros["TASK_FEATURE_LENGTHS"]
  assert set(lengths) == {"inputs", "targets"} and all(v > 0 for v in lengths.values())
  rebound = {(b.selector, b.arg_name) for b in gin.configurable_bindings()}
  assert ("seqio.SentencePieceVocabulary", "sentencepiece_model_file") in rebound
  assert ("seqio.SentencePieceVocabulary", "extra_ids") in rebound


@pytest.mark.parametrize("path", [p for p in gin_files() if kind(p)], ids=lambda p: p.name)
def test_entry_point_files_include_model_run_and_task_in_order(path):
  gin = parse(path)
  runs = [i for i in gin.includes if i.startswith("t5x/configs/runs/")]
  assert len(runs) == 1 and runs[0] in RUN_GINS[kind(path)], gin.includes
  model = gin.includes.index(runs[0]) - 1
  assert model >= 0, "a model gin comes before the run gin"
  assert gin.includes[model].endswith("_model.gin") or gin.includes[model] in T5X_MODEL_GINS
  assert gin.includes[-1] == SHARED, "the shared task file comes after the run gin"
  macros = flattened(path)
  missing = REQUIRED[kind(path)] - set(macros)
  if any(i in T5X_MODEL_GINS for i in gin.includes):  # T5X's model gin defines MODEL itself
    missing -= {"MODEL"}
  assert not missing, f"{path.name} leaves {sorted(missing)} unset"
  if "finetune.gin" in runs[0]:
    assert str(macros["INITIAL_CHECKPOINT_PATH"]).startswith("gs://t5-data/pretrained_models/")
    assert macros["TRAIN_STEPS"] > int(macros["INITIAL_CHECKPOINT_PATH"].rsplit("_", 1)[1])


def _fields(cls) -> set[str]:
  return {f.name for f in dataclasses.fields(cls)}


def test_bindings_to_our_modules_name_real_parameters():
  from kard_jax.models import gpt, t5
  from kard_jax.interop import t5x_support

  known = {"t5.T5Config": _fields(t5.T5Config), "gpt.GPTConfig": _fields(gpt.GPTConfig),
           "t5.Transformer": {"config"}, "gpt.GPT": {"config"},
           "t5x_support.task_vocabulary":
               set(inspect.signature(t5x_support.task_vocabulary).parameters)}
  checked = 0
  for path in gin_files():
    for b in parse(path).configurable_bindings():
      if b.selector in known:
        assert b.arg_name in known[b.selector], f"{path.name}: {b.selector}.{b.arg_name}"
        checked += 1
  assert checked >= 10
  vocab_sizes = [b.value for p in gin_files() for b in parse(p).configurable_bindings()
                 if b.arg_name == "vocab_size"]
  assert vocab_sizes and all(v % 128 == 0 for v in vocab_sizes)


def _named_tasks() -> set[str]:
  names = set()
  for path in gin_files():
    gin = parse(path)
    value = gin.macros().get("MIXTURE_OR_TASK_NAME")
    if isinstance(value, str):
      names.add(value)
    names |= set(re.findall(r"MIXTURE_OR_TASK_NAME=\"'([a-z0-9_]+)'\"", gin.text))
  return names


def test_named_tasks_are_registered_and_the_vocabulary_is_the_tasks(tmp_path, monkeypatch):
  monkeypatch.setenv("KARD_DATA_DIR", str(tmp_path))
  import seqio
  import tasks
  from kard_jax.interop import t5x_support

  names = _named_tasks()
  assert len(names) >= 3
  registered = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  for name in names:
    assert name in registered, f"{name} is not registered by `import tasks`"
    assert name in tasks.REGISTERED
    vocab = t5x_support.task_vocabulary(name)
    task = seqio.get_mixture_or_task(name)
    assert vocab == task.output_features["inputs"].vocabulary
  with pytest.raises(ValueError):
    t5x_support.task_vocabulary(sorted(names)[0], feature="nope")


# --- Parsed as T5X parses them (tests/interop/t5x_stub.py stands in for T5X's modules). ---

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax.linen import partitioning as nn_partitioning  # noqa: E402

from tests.interop import t5x_stub  # noqa: E402

# What a user passes on the command line besides the file (T5X's REQUIRED macros).
USER_FLAGS = {"train": ["MODEL_DIR='/tmp/kard_model'"],
              "eval": ["CHECKPOINT_PATH='/tmp/kard_model/checkpoint_2000'",
                       "EVAL_OUTPUT_DIR='/tmp/kard_model/eval'"],
              "infer": ["CHECKPOINT_PATH='/tmp/kard_model/checkpoint_2000'",
                        "INFER_OUTPUT_DIR='/tmp/kard_model/infer'"]}


@pytest.fixture
def t5x(tmp_path, monkeypatch):
  """T5X's stand-in installed for one test; tasks registered from an empty data root."""
  monkeypatch.setenv("KARD_DATA_DIR", str(tmp_path / "data"))
  import tasks  # noqa: F401  (registers every benchmark's tasks)
  with t5x_stub.installed(tmp_path / "t5x_src"):
    yield t5x_stub


def _entry_files() -> list[pathlib.Path]:
  return [p for p in gin_files() if kind(p)]


@pytest.mark.parametrize("path", _entry_files(), ids=lambda p: p.name)
def test_entry_files_parse_as_t5x_and_the_model_vocabulary_is_the_tasks(t5x, path):
  t5x.parse(str(path.relative_to(REPO_ROOT)), USER_FLAGS[kind(path)])
  made = t5x.run(kind(path))
  dataset = made["train_dataset_cfg" if kind(path) == "train" else "dataset_cfg"]
  assert dataset["mixture_or_task_name"] == "kard_strategyqa_kard_bm25"
  assert dataset["use_cached"] is False and dataset["module"] == "tasks"
  model = made["model"]
  vocabularies = [model[k] for k in ("vocabulary", "input_vocabulary", "output_vocabulary")
                  if k in model.kwargs]
  import seqio
  task = seqio.get_mixture_or_task(dataset["mixture_or_task_name"])
  # T5X's utils.verify_matching_vocabs: the model's vocabulary equals the task's.
  assert vocabularies and all(v == task.output_features["targets"].vocabulary
                              for v in vocabularies)


def _param_axes(module, decoder_only: bool) -> tuple[dict, int]:
  """{parameter path: logical axis names} of `module`, read from flax's partitioning metadata
  (the `params_axes` collection T5X reads), and the number of parameters."""
  tokens = jnp.ones((1, 8), jnp.int32)
  args = (tokens, tokens) if decoder_only else (tokens, tokens, tokens)
  variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args,
                                                 enable_dropout=False))
  names = nn_partitioning.get_axis_names(variables["params_axes"])
  axes = flax.traverse_util.flatten_dict(flax.core.unfreeze(names), sep="/")
  n_params = len(flax.traverse_util.flatten_dict(flax.core.unfreeze(variables["params"])))
  return {k: tuple(v) for k, v in axes.items()}, n_params


# Our models' variants whose parameters differ (tied / untied output layer, gated / plain MLP).
MODEL_VARIANTS = [
    ("kard_gpt_train.gin", []),
    ("kard_gpt_train.gin", ["gpt.GPTConfig.tie_embeddings = False"]),
    ("kard_t5_train.gin", []),
    ("kard_t5_train.gin", ["t5.T5Config.tie_word_embeddings = True",
                           "t5.T5Config.feed_forward = 'relu'"]),
]


@pytest.mark.parametrize("name,bindings", MODEL_VARIANTS,
                         ids=[f"{n}{'+' if b else ''}{len(b) or ''}" for n, b in MODEL_VARIANTS])
def test_every_parameter_axis_has_a_factor_rule_and_a_partitioning_rule(t5x, name, bindings):
  """T5X's Adafactor looks each parameter's logical axis names up in its factor rules (KeyError on
  a missing one, e.g. GPT's 'abspos_buckets'), and its partitioner maps them with the logical
  axis rules; both as the train gin binds them, for the module the gin builds."""
  t5x.parse(f"gin_configs/t5x/{name}", USER_FLAGS["train"] + bindings)
  made = t5x.run("train")
  model = made["model"]
  axes, n_params = _param_axes(model["module"], decoder_only="vocabulary" in model.kwargs)
  assert len(axes) == n_params, "every parameter declares its logical axes"
  names = {a for spec in axes.values() for a in spec}
  assert {"embed", "mlp", "vocab", "joined_kv"} <= names
  factor_rules = model["optimizer_def"]["logical_factor_rules"]
  logical_rules = dict(made["partitioner"]["logical_axis_rules"])
  # T5X's logical axis rules as standard_logical_axis_rules() defines them, plus extras we bind.
  assert set(t5x_stub.T5X_LOGICAL_AXIS_RULES) <= set(made["partitioner"]["logical_axis_rules"])
  for path, spec in sorted(axes.items()):
    for axis in spec:
      assert axis in factor_rules, f"{name}: {path} axis {axis!r} has no Adafactor factor rule"
      assert str(factor_rules[axis]).lower() in t5x_stub.FACTOR_NAMES
      assert axis in logical_rules, f"{name}: {path} axis {axis!r} has no logical axis rule"
    # Adafactor.set_param_axes refuses a parameter with row, column and unfactored axes at once.
    dims = {t5x_stub.FACTOR_NAMES[str(factor_rules[a]).lower()] for a in spec}
    assert not {"row", "column", "none"} <= dims, f"{path}: incomplete adafactor spec {spec}"
  # Our rules agree with T5X's own wherever T5X has one, so T5's factoring is unchanged.
  for axis, dim in t5x_stub.T5X_FACTOR_RULES.items():
    if axis in factor_rules:
      assert factor_rules[axis] == dim, axis


def test_t5x_default_factor_rules_miss_the_gpt_position_axis(t5x):
  """The failure the bound rules fix: T5X's standard_logical_factor_rules() lacks a GPT axis."""
  t5x.parse("gin_configs/t5x/kard_gpt_train.gin", USER_FLAGS["train"])
  module = t5x.run("train")["model"]["module"]
  axes, _ = _param_axes(module, decoder_only=True)
  missing = {a for spec in axes.values() for a in spec} - set(t5x_stub.T5X_FACTOR_RULES)
  assert missing == {"abspos_buckets"}


@pytest.mark.parametrize("name,default", [("kard_t5_train.gin", 64), ("kard_gpt_train.gin", 64),
                                          ("flan_t5_finetune.gin", 32)])
def test_batch_size_override_reaches_the_dataset_configs(t5x, name, default):
  t5x.parse(f"gin_configs/t5x/{name}", USER_FLAGS["train"])
  made = t5x.run("train")
  assert made["train_dataset_cfg"]["batch_size"] == default
  assert made["train_eval_dataset_cfg"]["batch_size"] == default
  t5x.parse(f"gin_configs/t5x/{name}", USER_FLAGS["train"] + ["BATCH_SIZE = 8"])
  made = t5x.run("train")
  assert made["train_dataset_cfg"]["batch_size"] == 8
  assert made["train_eval_dataset_cfg"]["batch_size"] == 8


def test_vocab_file_follows_the_task(t5x):
  """Any seqio.SentencePieceVocabulary built from the gins reads the named task's own file."""
  import gin
  import seqio

  files = {}
  for benchmark in ("medqa", "obqa", "strategyqa"):
    t5x.parse("gin_configs/t5x/kard_t5_infer.gin", USER_FLAGS["infer"] + [
        f"MIXTURE_OR_TASK_NAME = 'kard_{benchmark}_kard_rerank'"])
    vocab = gin.get_configurable(seqio.SentencePieceVocabulary)()
    task_vocab = seqio.get_mixture_or_task(f"kard_{benchmark}_kard_rerank").output_features[
        "targets"].vocabulary
    assert vocab.sentencepiece_model_file == task_vocab.sentencepiece_model_file
    assert vocab.extra_ids == task_vocab.extra_ids == 0
    files[benchmark] = vocab.sentencepiece_model_file
  assert files["medqa"].endswith(os.path.join("medqa", "spiece.model"))
  assert len(set(files.values())) == 3


def _readme_t5x_commands() -> tuple[str, list[list[str]]]:
  """The README's T5X section and each `python -m ...` command in it, as argv (a `$split` loop
  expanded for both splits)."""
  text = (REPO_ROOT / "README.md").read_text()
  section = text[text.index("## With T5X\n"):]
  section = section[:section.index("\n## ", 1)]
  lines = [line.strip() for line in section.replace("\\\n", " ").splitlines()]
  commands, loop = [], None
  for line in lines:
    match = re.fullmatch(r"for split in ([a-z ]+); do", line)
    if match:
      loop = (match.group(1).split(), [])
    elif line == "done":
      commands += [shlex.split(body.replace("$split", split)) for split in loop[0]
                   for body in loop[1]]
      loop = None
    elif line.startswith("python -m ") and loop:
      loop[1].append(line)
    elif line.startswith("python -m "):
      commands.append(shlex.split(line))
  return section, commands


def _flags(argv: list[str]) -> tuple[str, dict[str, str]]:
  gin_file = next(a.split("=", 1)[1] for a in argv if a.startswith("--gin_file="))
  bindings = dict(a[len("--gin."):].split("=", 1) for a in argv if a.startswith("--gin."))
  return gin_file, bindings


def test_readme_t5x_commands_parse_as_t5x_and_cover_every_gin_file(t5x):
  import ast

  section, commands = _readme_t5x_commands()
  t5x_runs = [c for c in commands if c[2].startswith("t5x.")]
  used = set()
  for argv in t5x_runs:
    entry = argv[2].split(".")[1].replace("evaluate", "eval")
    gin_file, bindings = _flags(argv)
    assert kind(REPO_ROOT / gin_file) == entry, f"{gin_file} run with t5x.{entry}"
    used.add(pathlib.Path(gin_file).name)
    t5x.parse(gin_file, [f"{k}={v}" for k, v in bindings.items()])
    made = t5x.run(entry)
    dataset = made["train_dataset_cfg" if entry == "train" else "dataset_cfg"]
    assert dataset["mixture_or_task_name"] == ast.literal_eval(bindings["MIXTURE_OR_TASK_NAME"])
    if "utils.DatasetConfig.split" in bindings:
      assert dataset["split"] == ast.literal_eval(bindings["utils.DatasetConfig.split"])
    if "BATCH_SIZE" in bindings:
      assert dataset["batch_size"] == int(bindings["BATCH_SIZE"])
  assert used == {p.name for p in _entry_files()}, "a command for every train/eval/infer gin"

  # Sci-CoT: stage 1 trains, decodes validation and test, each converted from the file t5x.infer
  # writes, before stage 2 trains and is evaluated.
  order = [(c[2], _flags(c)[1].get("MIXTURE_OR_TASK_NAME", "") if c[2].startswith("t5x.")
            else c[c.index("--split") + 1]) for c in commands if "scicot" in " ".join(c)]
  assert order == [("t5x.train", "'kard_synthetic_scicot_rationale'"),
                   ("t5x.infer", "'kard_synthetic_scicot_rationale'"),
                   ("kard_jax.interop.t5x_rationales", "validation"),
                   ("t5x.infer", "'kard_synthetic_scicot_rationale'"),
                   ("kard_jax.interop.t5x_rationales", "test"),
                   ("t5x.train", "'kard_synthetic_scicot_answer'"),
                   ("t5x.eval", "'kard_synthetic_scicot_answer'")]
  scicot = [c for c in commands if "scicot" in " ".join(c)]
  for infer, convert in ((scicot[1], scicot[2]), (scicot[3], scicot[4])):
    bindings = _flags(infer)[1]
    out_dir = ast.literal_eval(bindings["INFER_OUTPUT_DIR"])
    task = ast.literal_eval(bindings["MIXTURE_OR_TASK_NAME"])
    assert convert[convert.index("--infer_file") + 1] == (
        f"{out_dir}/{task}-predict.jsonl-00000-of-00001")  # T5X's merged output name
    assert ast.literal_eval(bindings["utils.DatasetConfig.split"]) == \
        convert[convert.index("--split") + 1]
  stage1 = ast.literal_eval(_flags(scicot[0])[1]["MODEL_DIR"])
  assert ast.literal_eval(_flags(scicot[1])[1]["CHECKPOINT_PATH"]).startswith(stage1 + "/")


def test_the_t5x_stand_in_leaves_no_configurable_behind(tmp_path, monkeypatch):
  """After the stand-in's block, a plain `T5Config` binding (the pipeline's students use them) is
  not ambiguous with the stand-in's network.T5Config, whatever test ran before in the process."""
  monkeypatch.setenv("KARD_DATA_DIR", str(tmp_path / "data"))
  import tasks  # noqa: F401
  path = next(p for p in _entry_files() if p.name == "flan_t5_finetune.gin")
  with t5x_stub.installed(tmp_path / "t5x_src"):
    t5x_stub.parse(str(path.relative_to(REPO_ROOT)), USER_FLAGS["train"])
    registered = gin.config._REGISTRY.matching_selectors("T5Config")  # pylint: disable=protected-access
    assert any(s.startswith("t5x.") for s in registered), registered
  left = gin.config._REGISTRY.matching_selectors("T5Config")  # pylint: disable=protected-access
  assert not any(s.startswith("t5x.") for s in left), left
