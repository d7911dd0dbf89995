"""Bad study files fail before anything trains, with a message naming the problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gridpoint.errors import StudyConfigError
from gridpoint.trainers.study_config import load_study_config
from tests.cli_main import run_main
from tests.helpers import ROOT

EXAMPLE = (ROOT / "examples" / "tiny-study.toml").read_text()


def study_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tiny_pipeline.py").write_text((ROOT / "examples" / "tiny_pipeline.py").read_text())
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_the_shipped_example_is_valid() -> None:
    config = load_study_config(ROOT / "examples" / "tiny-study.toml")
    assert config.pipeline == "tiny_pipeline:load"
    assert {d.name for d in config.search_space} == {
        "learning_rate",
        "batch_size",
        "warmup_ratio",
        "epochs",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("seed = 0", 'seed = 0\ncolour = "red"'), "colour: unknown key"),
        (
            lambda t: t.split("[search_space]")[0] + "[search_space]\n[pruner]\ntype = 'median'\n",
            "search_space: is empty",
        ),
        (
            lambda t: t.replace("low = 1e-4, high = 5e-3", "low = 5e-3, high = 1e-4"),
            "impossible range",
        ),
        (lambda t: t.replace('pipeline = "tiny_pipeline:load"\n', ""), "pipeline: is required"),
        (
            lambda t: t.replace('pipeline = "tiny_pipeline:load"', 'pipeline = "tiny_pipeline"'),
            "module:function",
        ),
        (
            lambda t: t.replace("learning_rate = {", "momentum = {"),
            "search_space.momentum: unknown hyperparameter",
        ),
        (lambda t: t.replace('type = "median"', 'type = "magic"'), "pruner.type"),
        (lambda t: t.replace('direction = "maximize"', 'direction = "up"'), "objective.direction"),
        (
            lambda t: t.replace('task = "text-classification"', 'task = "summarization"'),
            "task: must be one of",
        ),
        (
            lambda t: t.replace('task = "text-classification"', 'task = "causal-lm"'),
            "objective.metric: must be one of eval_loss, perplexity for causal-lm",
        ),
        (lambda t: t + "\n[output]\nkeep = 51\n", "output.keep: must be between 0 and 50"),
        (
            lambda t: t.replace("max_length = 96", "max_length = 96\nartifact = 'abc'"),
            "exactly one",
        ),
        (
            lambda t: t.replace(
                "eval_interval = 10", "eval_interval = 10\ngradient_accumulation = 0"
            ),
            "training.gradient_accumulation",
        ),
        (
            lambda t: t.replace("eval_interval = 10", 'eval_interval = 10\ntrainable = "encoder"'),
            "training.trainable: must be one of all, head",
        ),
        (
            lambda t: t.replace("eval_interval = 10", "eval_interval = 10\ntrainable = true"),
            "training.trainable: must be a string",
        ),
        (
            lambda t: t.replace("max_length = 96", "max_length = 96\nlora = true").replace(
                "eval_interval = 10", 'eval_interval = 10\ntrainable = "head"'
            ),
            "training.trainable: 'head' trains no adapters",
        ),
        (lambda t: t + '\n[warm_start]\nmethod = "psychic"\n', "warm_start.method"),
        (
            lambda t: t + '\n[warm_start]\nrename = { lr = "learn_rate" }\n',
            "warm_start.rename.lr: 'learn_rate' is not in this study's search_space",
        ),
    ],
)
def test_invalid_study_file_is_refused_naming_the_problem(
    tmp_path: Path, change: Callable[[str], str], message: str
) -> None:
    path = study_file(tmp_path, change(EXAMPLE))
    with pytest.raises(StudyConfigError, match=message):
        load_study_config(path)


# The refusals below run the CLI in this process (tests/cli_main.py); the pipelines that raise
# or fail to import run in a child process, where a module of that name was never imported.


def test_tune_refuses_a_missing_pipeline_before_training(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    home = tmp_path / "node"
    assert run_main(capsys, "init", "--name", "A", home=home).returncode == 0
    path = study_file(tmp_path, EXAMPLE.replace("tiny_pipeline:load", "no_such_module:load"))
    result = run_main(capsys, "tune", str(path), home=home)
    assert result.returncode == 1
    assert "no_such_module" in result.stderr and "Traceback" not in result.stderr
    assert run_main(capsys, "catalog", "query", "--json", home=home).stdout.strip() == "[]"


def test_tune_refuses_from_without_warm_start(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    home = tmp_path / "node"
    assert run_main(capsys, "init", "--name", "A", home=home).returncode == 0
    path = study_file(tmp_path, EXAMPLE)
    result = run_main(capsys, "tune", str(path), "--from", "task.language = 'en'", home=home)
    assert result.returncode == 1 and "--warm-start" in result.stderr


def test_tune_refuses_a_bad_prior_filter_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    home = tmp_path / "node"
    assert run_main(capsys, "init", "--name", "A", home=home).returncode == 0
    path = study_file(tmp_path, EXAMPLE)
    from_ = ("--warm-start", "--from", "task.colour = 'red'")
    result = run_main(capsys, "tune", str(path), *from_, home=home)
    assert result.returncode == 1 and "task.colour" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_pipeline_that_raises_shows_its_own_message_on_this_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "node"
    assert run_main(capsys, "init", "--name", "A", home=home).returncode == 0
    (tmp_path / "raising.py").write_text(
        "def load():\n    raise ValueError('the warehouse export is missing column q3')\n"
    )
    path = study_file(tmp_path, EXAMPLE.replace("tiny_pipeline:load", "raising:load"))
    result = run_main(capsys, "tune", str(path), home=home)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "raised ValueError: the warehouse export is missing column q3" in result.stderr


def test_a_diverging_trial_fails_shows_why_and_is_published_only_as_diverged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a learning rate so large that the loss stops being a number.
    home = tmp_path / "node"
    assert run_main(capsys, "init", "--name", "A", home=home).returncode == 0
    huge = EXAMPLE.replace(
        'learning_rate = { type = "float", low = 1e-4, high = 5e-3, log = true }',
        'learning_rate = { type = "float", low = 1e8, high = 1e9, log = true }',
    )
    path = study_file(tmp_path, huge)
    # Execute
    result = run_main(capsys, "tune", str(path), "--trials", "1", "--json", home=home)
    # Assert
    assert result.returncode == 0, result.stderr
    assert "trial 0 failed: TrainingDiverged" in result.stderr
    assert "(published as 'diverged')" in result.stderr
    [record] = run_main(capsys, "catalog", "query", "--json", home=home).json()
    assert record["status"] == "failed" and record["failure"] == "diverged"
    assert "TrainingDiverged" not in json.dumps(record)


def test_a_pipeline_module_that_fails_to_import_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "node"
    assert run_main(capsys, "init", "--name", "A", home=home).returncode == 0
    (tmp_path / "broken.py").write_text("undefined_name_here\n")
    path = study_file(tmp_path, EXAMPLE.replace("tiny_pipeline:load", "broken:load"))
    result = run_main(capsys, "tune", str(path), home=home)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "'broken' raised NameError when imported" in result.stderr


def test_the_output_keep_artifact_and_training_options_are_read(tmp_path: Path) -> None:
    text = EXAMPLE.replace(
        "eval_interval = 10",
        "eval_interval = 10\ngradient_accumulation = 4\ngradient_checkpointing = true\n"
        'trainable = "head"',
    )
    text = text.replace("[model]\n", "[model]\nartifact = 'kept-model-id'\n").replace(
        "config = { model_type", "# config = { model_type"
    )
    config = load_study_config(study_file(tmp_path, text + "\n[output]\nkeep = 3\n"))
    assert config.keep == 3 and config.model.artifact == "kept-model-id"
    assert config.gradient_accumulation == 4 and config.gradient_checkpointing
    assert config.trainable == "head"


def test_a_causal_lm_study_cannot_train_its_head_alone(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "causal-lm-study.toml").read_text()
    path = tmp_path / "study.toml"
    path.write_text(text.replace("[training]\n", '[training]\ntrainable = "head"\n'))
    with pytest.raises(StudyConfigError, match="'head' is for classification tasks"):
        load_study_config(path)


@pytest.mark.parametrize(
    ("study", "task", "metric", "lora"),
    [
        ("causal-lm-study.toml", "causal-lm", "eval_loss", False),
        ("token-classification-study.toml", "token-classification", "f1", False),
        ("image-classification-study.toml", "image-classification", "accuracy", False),
    ],
)
def test_each_task_example_is_valid(study: str, task: str, metric: str, lora: bool) -> None:
    config = load_study_config(ROOT / "examples" / study)
    assert (config.task, config.objective_metric, config.model.lora) == (task, metric, lora)
    assert config.keep == 1
