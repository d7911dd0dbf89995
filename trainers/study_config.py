"""The study file: a TOML document naming the private pipeline, the model, the search space,
the objective and the pruner. Everything is checked here, before any data is loaded or any
model trains; every problem is reported with the key it concerns.

    pipeline = "my_pipeline:load"    # module:function, resolved next to this file
    name = "sentiment-v2"            # private; published only as a keyed pseudonym
    task = "text-classification"    # | causal-lm | token-classification | image-classification
    language = "en"
    trials = 20
    seed = 0

    [model]                          # path = "/models/minilm"  (a local checkpoint), or
    config = { model_type = "bert", hidden_size = 32, ... }   # a fresh model from a config
    public_id = "sentence-transformers/all-MiniLM-L6-v2"      # what to publish for a local path
    lora = false                     # default true for causal-lm
    max_length = 128
    # artifact = "ID"                # a model this node keeps; the node resolves it to a path

    [objective]
    metric = "accuracy"
    direction = "maximize"

    [training]
    eval_interval = 20               # optimizer steps between evaluations
    gradient_accumulation = 1        # micro-batches per optimizer step
    gradient_checkpointing = false   # trade compute for memory
    trainable = "all"                # all | head: only the task's head, on the frozen model

    [output]
    keep = 1                         # the best K complete trials' models the node keeps (0: none)

    [search_space]
    learning_rate = { type = "float", low = 1e-5, high = 1e-3, log = true }
    batch_size = { type = "categorical", choices = [8, 16, 32] }

    [pruner]
    type = "median"                  # none | median | percentile | hyperband

    [privacy]                        # off without it (or the node's [privacy] default)
    epsilon = 8.0                    # see trainers/privacy/spec.py
    protect = "both"                 # training | evaluation | both

    [warm_start]                     # used by `tune --warm-start` only
    method = "rgpe"                  # rgpe | initial-design
    curve_pruning = true             # stop trials that fall below priors' curves
    rename = { lr = "learning_rate" }   # a prior's parameter name -> this study's
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridpoint.errors import StudyConfigError
from gridpoint.schema import SearchDimension
from gridpoint.trainers.privacy.spec import RELEASABLE_METRICS, PrivacySpec, privacy_from_table

__all__ = [
    "ModelSpec",
    "PrunerSpec",
    "StudyConfig",
    "WarmStartSpec",
    "check_privacy",
    "load_study_config",
]

TASKS = ("text-classification", "causal-lm", "token-classification", "image-classification")
#: The metrics each task measures (the objective must be one of them), its default objective
#: and the default (input, target) columns of a `datasets.Dataset` from its pipeline.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "text-classification": ("accuracy", "f1", "eval_loss"),
    "causal-lm": ("eval_loss", "perplexity"),
    "token-classification": ("f1", "accuracy", "eval_loss"),
    "image-classification": ("accuracy", "f1", "eval_loss"),
}
DEFAULT_OBJECTIVE: dict[str, tuple[str, str]] = {
    "text-classification": ("accuracy", "maximize"),
    "causal-lm": ("eval_loss", "minimize"),
    "token-classification": ("f1", "maximize"),
    "image-classification": ("accuracy", "maximize"),
}
DEFAULT_COLUMNS: dict[str, tuple[str, str]] = {
    "text-classification": ("text", "label"),
    "causal-lm": ("prompt", "response"),
    "token-classification": ("tokens", "tags"),
    "image-classification": ("image", "label"),
}
#: How many trained models one study may keep.
MAX_KEEP = 50
#: Hyperparameters the fine-tuner understands, with the value used when not searched: the
#: hyperparameter vocabulary (the anonymizer publishes no other). `dropout` (every dropout
#: layer's probability) applies only when searched: otherwise the model keeps its own.
KNOWN_PARAMS: dict[str, float | int] = {
    "learning_rate": 5e-5,
    "batch_size": 16,
    "epochs": 1,
    "warmup_ratio": 0.0,
    "weight_decay": 0.0,
    "lora_rank": 8,
    "dropout": 0.1,
}
#: Searched only: not applied, nor recorded, unless the search space names them.
_SEARCHED_ONLY = ("dropout",)
PRUNERS = ("none", "median", "percentile", "hyperband")
#: Which weights a trial trains: every one (or, with model.lora, the adapters and the head),
#: or the task's head alone on the frozen pretrained model (what DP-SGD can afford on few rows).
TRAINABLE = ("all", "head")
WARM_START_METHODS = ("rgpe", "initial-design")
_TOP = {"pipeline", "name", "task", "language", "trials", "seed", "model", "objective",
        "training", "search_space", "pruner", "warm_start", "text_column", "label_column",
        "output", "privacy"}  # fmt: skip
#: Tasks whose accuracy counts examples (one row moves it by 1/n): their evaluation rows can
#: be protected by released values.
_PER_EXAMPLE_ACCURACY = ("text-classification", "image-classification")


@dataclass(frozen=True)
class ModelSpec:
    """Where the base model comes from (never a download).

    `artifact` names a model this node keeps; trainers cannot resolve it (the node replaces it
    with `path` before anything trains).
    """

    path: Path | None = None
    hub_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    public_id: str = ""
    lora: bool = False
    max_length: int = 128
    artifact: str = ""


@dataclass(frozen=True)
class PrunerSpec:
    type: str = "median"
    n_startup_trials: int = 1
    n_warmup_steps: int = 0
    percentile: float = 25.0


@dataclass(frozen=True)
class WarmStartSpec:
    """How `tune --warm-start` uses prior studies."""

    method: str = "rgpe"
    curve_pruning: bool = True
    rename: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyConfig:
    """A validated study file."""

    path: Path
    pipeline: str
    name: str
    task: str
    language: str
    trials: int
    seed: int
    model: ModelSpec
    objective_metric: str
    objective_direction: str
    eval_interval: int
    search_space: tuple[SearchDimension, ...]
    pruner: PrunerSpec
    #: The input column of a `datasets.Dataset` (text, prompt, tokens or image) and its target.
    text_column: str = "text"
    label_column: str = "label"
    warm_start: WarmStartSpec = field(default_factory=WarmStartSpec)
    gradient_accumulation: int = 1
    gradient_checkpointing: bool = False
    #: Which weights train ([training] trainable): "all" or "head".
    trainable: str = "all"
    #: How many of the best complete trials' models the node keeps ([output] keep).
    keep: int = 1
    #: The privacy mode (None: off); privacy_set when the file has a [privacy] table (the
    #: node's default then does not apply, even when the table turns privacy off).
    privacy: PrivacySpec | None = None
    privacy_set: bool = False

    def fixed_params(self) -> dict[str, float | int]:
        """Defaults for the known parameters this study does not search (lora_rank only with
        LoRA; dropout never: the model keeps its own)."""
        searched = {d.name for d in self.search_space}
        return {
            k: v
            for k, v in KNOWN_PARAMS.items()
            if k not in searched
            and k not in _SEARCHED_ONLY
            and (k != "lora_rank" or self.model.lora)
        }


def _fail(key: str, problem: str) -> StudyConfigError:
    return StudyConfigError(f"study config: {key}: {problem}")


def _get(
    table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...
) -> Any:
    if key not in table:
        if default is ...:
            raise _fail(f"{where}{key}", "is required")
        return default
    value = table[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _fail(f"{where}{key}", f"must be {_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise _fail(f"{where}{key}", f"must be {_name(kind)}, got {type(value).__name__}")
    return value


def _name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "bool": "a boolean",
            "dict": "a table",
            "list": "a list",
        }[k.__name__]
        for k in kinds
    )


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise _fail(f"{where}{key}", "unknown key")


def load_study_config(path: Path) -> StudyConfig:
    """Reads and checks a study file; raises StudyConfigError naming the problem."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise StudyConfigError(f"study config {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyConfigError(f"study config {path.name} is not valid TOML: {exc}") from None
    _unknown(data, _TOP, "")
    pipeline = _get(data, "pipeline", str, "")
    module, sep, func = pipeline.partition(":")
    if not sep or not module or not func:
        raise _fail("pipeline", "must be 'module:function'")
    task = _get(data, "task", str, "", "text-classification")
    if task not in TASKS:
        raise _fail("task", f"must be one of {', '.join(TASKS)}")
    trials = _get(data, "trials", int, "", 10)
    if trials < 1:
        raise _fail("trials", "must be at least 1")
    model = _model(_get(data, "model", dict, ""), path.parent, task)
    default_metric, default_direction = DEFAULT_OBJECTIVE[task]
    objective = _get(data, "objective", dict, "", {})
    _unknown(objective, {"metric", "direction"}, "objective.")
    direction = _get(objective, "direction", str, "objective.", default_direction)
    if direction not in ("maximize", "minimize"):
        raise _fail("objective.direction", "must be 'maximize' or 'minimize'")
    metric = _get(objective, "metric", str, "objective.", default_metric)
    if metric not in TASK_METRICS[task]:
        raise _fail(
            "objective.metric", f"must be one of {', '.join(TASK_METRICS[task])} for {task}"
        )
    training = _get(data, "training", dict, "", {})
    _unknown(
        training,
        {"eval_interval", "gradient_accumulation", "gradient_checkpointing", "trainable"},
        "training.",
    )
    eval_interval = _get(training, "eval_interval", int, "training.", 20)
    if eval_interval < 1:
        raise _fail("training.eval_interval", "must be at least 1")
    accumulation = _get(training, "gradient_accumulation", int, "training.", 1)
    if not 1 <= accumulation <= 1024:
        raise _fail("training.gradient_accumulation", "must be between 1 and 1024")
    trainable = _trainable(training, task, model)
    output = _get(data, "output", dict, "", {})
    _unknown(output, {"keep"}, "output.")
    keep = _get(output, "keep", int, "output.", 1)
    if not 0 <= keep <= MAX_KEEP:
        raise _fail("output.keep", f"must be between 0 and {MAX_KEEP}")
    text_column, label_column = DEFAULT_COLUMNS[task]
    space = _search_space(_get(data, "search_space", dict, ""), model.lora)
    pruner = _pruner(_get(data, "pruner", dict, "", {}))
    privacy_table = _get(data, "privacy", dict, "", None)
    privacy = privacy_from_table(privacy_table) if privacy_table is not None else None
    language = _get(data, "language", str, "", "")
    if language and (len(language) != 2 or not language.isalpha() or not language.islower()):
        raise _fail("language", "must be an ISO 639-1 code like 'en'")
    config = StudyConfig(
        path=path.resolve(),
        pipeline=pipeline,
        name=_get(data, "name", str, "", path.stem),
        task=task,
        language=language,
        trials=trials,
        seed=_get(data, "seed", int, "", 0),
        model=model,
        objective_metric=metric,
        objective_direction=direction,
        eval_interval=eval_interval,
        search_space=space,
        pruner=pruner,
        text_column=_get(data, "text_column", str, "", text_column),
        label_column=_get(data, "label_column", str, "", label_column),
        warm_start=_warm_start(_get(data, "warm_start", dict, "", {}), space),
        gradient_accumulation=accumulation,
        gradient_checkpointing=_get(training, "gradient_checkpointing", bool, "training.", False),
        trainable=trainable,
        keep=keep,
        privacy=privacy,
        privacy_set=privacy_table is not None,
    )
    if privacy is not None:
        check_privacy(config, privacy)
    return config


def _trainable(training: dict[str, Any], task: str, model: ModelSpec) -> str:
    trainable: str = _get(training, "trainable", str, "training.", "all")
    if trainable not in TRAINABLE:
        raise _fail("training.trainable", f"must be one of {', '.join(TRAINABLE)}")
    if trainable == "head":
        if task == "causal-lm":
            raise _fail(
                "training.trainable",
                "'head' is for classification tasks (a causal LM's head is tied to its "
                "embeddings); use LoRA (model.lora = true)",
            )
        if model.lora:
            raise _fail(
                "training.trainable",
                "'head' trains no adapters: set model.lora = false or use 'all'",
            )
    return trainable


def check_privacy(config: StudyConfig, privacy: PrivacySpec) -> None:
    """StudyConfigError when the study cannot run under privacy (from its file or the node)."""
    if privacy.evaluation:
        if config.task not in _PER_EXAMPLE_ACCURACY:
            raise _fail(
                "privacy.protect",
                f"the evaluation rows of a {config.task} study cannot be protected (its metrics "
                "have no per-row sensitivity); use protect = 'training'",
            )
        if config.objective_metric not in RELEASABLE_METRICS:
            raise _fail(
                "objective.metric",
                f"with protected evaluation rows the objective must be one of "
                f"{', '.join(RELEASABLE_METRICS)} (the values a private study can release)",
            )
    if privacy.training and config.gradient_accumulation != 1:
        raise _fail(
            "training.gradient_accumulation", "DP-SGD takes one sampled batch per step: use 1"
        )
    if privacy.training and config.gradient_checkpointing:
        raise _fail("training.gradient_checkpointing", "is not supported with DP-SGD")
    searched = {d.name for d in config.search_space}
    if privacy.publish == "best" and searched & {"batch_size", "epochs"}:
        raise _fail(
            "privacy.publish",
            "'best' repeats one mechanism: batch_size and epochs must be fixed, not searched",
        )


def _warm_start(table: dict[str, Any], space: tuple[SearchDimension, ...]) -> WarmStartSpec:
    _unknown(table, {"method", "curve_pruning", "rename"}, "warm_start.")
    method = _get(table, "method", str, "warm_start.", "rgpe")
    if method not in WARM_START_METHODS:
        raise _fail("warm_start.method", f"must be one of {', '.join(WARM_START_METHODS)}")
    rename = _get(table, "rename", dict, "warm_start.", {})
    searched = {d.name for d in space}
    for old, new in rename.items():
        if not isinstance(new, str):
            raise _fail(
                f"warm_start.rename.{old}", "must be a string (this study's parameter name)"
            )
        if new not in searched:
            raise _fail(f"warm_start.rename.{old}", f"{new!r} is not in this study's search_space")
    return WarmStartSpec(
        method=method,
        curve_pruning=_get(table, "curve_pruning", bool, "warm_start.", True),
        rename=dict(rename),
    )


def _model(table: dict[str, Any], base: Path, task: str) -> ModelSpec:
    _unknown(
        table, {"path", "hub_id", "config", "public_id", "lora", "max_length", "artifact"}, "model."
    )
    sources = [k for k in ("path", "hub_id", "config", "artifact") if k in table]
    if len(sources) != 1:
        raise _fail(
            "model",
            "give exactly one of path (local checkpoint), hub_id (local cache), config "
            "or artifact (a model this node keeps)",
        )
    artifact = _get(table, "artifact", str, "model.", "")
    if "artifact" in table and not artifact.strip():
        raise _fail("model.artifact", "must not be empty")
    path = None
    if "path" in table:
        path = (base / _get(table, "path", str, "model.")).resolve()
        if not (path / "config.json").is_file():
            raise _fail("model.path", "is not a checkpoint directory (no config.json in it)")
    config = _get(table, "config", dict, "model.", {})
    if config and "model_type" not in config:
        raise _fail("model.config.model_type", "is required (e.g. 'bert')")
    max_length = _get(table, "max_length", int, "model.", 128)
    if not 8 <= max_length <= 8192:
        raise _fail("model.max_length", "must be between 8 and 8192")
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and max_length > positions:
        raise _fail(
            "model.max_length",
            f"{max_length} exceeds model.config.max_position_embeddings ({positions})",
        )
    return ModelSpec(
        path=path,
        hub_id=_get(table, "hub_id", str, "model.", ""),
        config=config,
        public_id=_get(table, "public_id", str, "model.", ""),
        lora=_get(table, "lora", bool, "model.", task == "causal-lm"),
        max_length=max_length,
        artifact=artifact,
    )


def _search_space(table: dict[str, Any], lora: bool) -> tuple[SearchDimension, ...]:
    if not table:
        raise _fail("search_space", "is empty: give at least one hyperparameter to search")
    dims = []
    for name, spec in table.items():
        where = f"search_space.{name}"
        if name not in KNOWN_PARAMS:
            raise _fail(where, f"unknown hyperparameter; known: {', '.join(KNOWN_PARAMS)}")
        if name == "lora_rank" and not lora:
            raise _fail(where, "lora_rank is searched only with model.lora = true")
        if not isinstance(spec, dict):
            raise _fail(where, 'must be a table like { type = "float", low = 1e-5, high = 1e-3 }')
        _unknown(spec, {"type", "low", "high", "log", "step", "choices"}, where + ".")
        kind = _get(spec, "type", str, where + ".")
        if kind == "categorical":
            choices = _get(spec, "choices", list, where + ".")
            if not choices:
                raise _fail(where + ".choices", "must not be empty")
            if name == "dropout" and not all(
                isinstance(c, int | float) and 0 <= c < 1 for c in choices
            ):
                raise _fail(where, "dropout choices must be numbers from 0 up to (not) 1")
            dims.append(SearchDimension(name, kind, choices=tuple(choices)))
            continue
        if kind not in ("float", "int"):
            raise _fail(where + ".type", "must be float, int or categorical")
        number = (int,) if kind == "int" else (int, float)
        low = _get(spec, "low", number, where + ".")
        high = _get(spec, "high", number, where + ".")
        log = _get(spec, "log", bool, where + ".", False)
        step = _get(spec, "step", number, where + ".", 0)
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise _fail(where, f"impossible range: low {low} > high {high}")
        if log and low <= 0:
            raise _fail(where, "a log range needs low > 0")
        if name in ("batch_size", "epochs", "lora_rank") and low < 1:
            raise _fail(where, f"{name} must be at least 1")
        if name == "dropout" and (kind != "float" or low < 0 or high >= 1):
            raise _fail(where, "dropout is a float from 0 up to (not) 1")
        dims.append(SearchDimension(name, kind, float(low), float(high), log, float(step)))
    return tuple(dims)


def _pruner(table: dict[str, Any]) -> PrunerSpec:
    _unknown(table, {"type", "n_startup_trials", "n_warmup_steps", "percentile"}, "pruner.")
    kind = _get(table, "type", str, "pruner.", "median")
    if kind not in PRUNERS:
        raise _fail("pruner.type", f"must be one of {', '.join(PRUNERS)}")
    return PrunerSpec(
        type=kind,
        n_startup_trials=_get(table, "n_startup_trials", int, "pruner.", 1),
        n_warmup_steps=_get(table, "n_warmup_steps", int, "pruner.", 0),
        percentile=float(_get(table, "percentile", (int, float), "pruner.", 25.0)),
    )
