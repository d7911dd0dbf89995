"""Tiny study files and private pipelines, one per task type, for tests.

Each finishes 2 trials in seconds on a CPU: models built from small configs, data made by
the pipeline itself. With `canary`, every private input carries a marker that must never
leave the node: prompts and responses, entity tag names, image file names.
"""

from __future__ import annotations

from pathlib import Path

CANARY = "zqtaskcanary"

CAUSAL_PIPELINE = """
import random

def _pairs(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        out.append((f"add {a} and {b} MARK", f"{a} plus {b} is {a + b} MARK"))
    return out

def load():
    return _pairs(48, 1), _pairs(12, 2)
"""

TOKEN_PIPELINE = """
import random

NAMES = ["ada", "alan", "grace", "paris", "oslo", "kyoto"]

def _sentences(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choices(["went", "to", "the", "city", "met"] + NAMES, k=rng.randint(3, 7))
        tags = ["B-PERMARK" if w in NAMES[:3] else "B-LOCMARK" if w in NAMES[3:] else "O" for w in words]
        out.append((words, tags))
    return out

def load():
    return _sentences(48, 1), _sentences(12, 2)
"""

IMAGE_PIPELINE = """
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent

def _images(n, seed, which):
    rng = np.random.default_rng(seed)
    folder = HERE / "images"
    folder.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        light = i % 2 == 0
        pixels = rng.integers(150, 255, (12, 12, 3)) if light else rng.integers(0, 100, (12, 12, 3))
        path = folder / f"MARK_{which}_{i}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        out.append((Image.open(path), "lightMARK" if light else "darkMARK"))
    return out

def load():
    return _images(48, 1, "train"), _images(12, 2, "eval")
"""

_COMMON = """
pipeline = "{module}:load"
name = "{name}"
task = "{task}"
language = "en"
trials = 4
seed = 0

[training]
eval_interval = 2

[search_space]
learning_rate = {{ type = "float", low = 1e-3, high = 1e-2, log = true }}
epochs = {{ type = "int", low = 1, high = 2 }}

[pruner]
type = "none"
"""

MODELS = {
    "causal-lm": (
        "causal_pipeline",
        CAUSAL_PIPELINE,
        """
[model]
max_length = 24
config = { model_type = "llama", hidden_size = 16, num_hidden_layers = 1, num_attention_heads = 2, num_key_value_heads = 2, intermediate_size = 32, max_position_embeddings = 32, vocab_size = 100 }
""",
    ),
    "token-classification": (
        "token_pipeline",
        TOKEN_PIPELINE,
        """
[model]
max_length = 16
config = { model_type = "bert", hidden_size = 16, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 32, max_position_embeddings = 32, vocab_size = 100 }
""",
    ),
    "image-classification": (
        "image_pipeline",
        IMAGE_PIPELINE,
        """
[model]
config = { model_type = "vit", hidden_size = 16, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 32, image_size = 8, patch_size = 4 }
""",
    ),
}

TASKS = tuple(MODELS)


def write_study(folder: Path, task: str, *, canary: bool = False, name: str = "") -> Path:
    """Writes a tiny study of `task` with its pipeline into folder; returns the study file."""
    module, pipeline, model = MODELS[task]
    mark = CANARY if canary else "x"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(pipeline.replace("MARK", mark))
    study = _COMMON.format(module=module, name=name or f"tiny-{task}", task=task) + model
    path = folder / "study.toml"
    path.write_text(study)
    return path


_EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
_EPOCHS = 'epochs = { type = "int", low = 4, high = 8 }'
#: examples/tiny-study.toml with 1 or 2 epochs a trial instead of 4 to 8, all else as written:
#: for the tests of what `tune` does (publishes, resumes, keeps, stops), not of how well it
#: trains. Training is most of those tests' time.
FAST_EXAMPLE = (
    (_EXAMPLES / "tiny-study.toml")
    .read_text()
    .replace(_EPOCHS, 'epochs = { type = "int", low = 1, high = 2 }')
)
assert (_EXAMPLES / "tiny-study.toml").read_text() != FAST_EXAMPLE, "the example's epochs moved"


def write_fast_example(folder: Path, name: str = "tiny-study.toml") -> Path:
    """Writes FAST_EXAMPLE and the example's pipeline (tiny_pipeline.py) into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_pipeline.py").write_text((_EXAMPLES / "tiny_pipeline.py").read_text())
    path = folder / name
    path.write_text(FAST_EXAMPLE)
    return path
