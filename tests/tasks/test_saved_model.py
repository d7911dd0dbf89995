"""The hooks the node builds on: trained models saved as plain folders, and loaded back."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from gridpoint.errors import ModelLoadError
from gridpoint.trainers.finetune import FineTuneSettings, finetune
from gridpoint.trainers.models import load_model
from gridpoint.trainers.saved_model import TrainedModel, adapter_base, save_trained, saved_method
from gridpoint.trainers.study_config import ModelSpec
from gridpoint.trainers.tasks import task_type
from tests.helpers import loopback_server

BERT = {
    "model_type": "bert",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
    "vocab_size": 100,
}
LLAMA = {
    "model_type": "llama",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
    "vocab_size": 100,
}
TEXTS = [("good fine great", "pos"), ("bad awful poor", "neg")] * 8
PAIRS = [(f"add {a} and 2", f"{a} plus 2 is {a + 2}") for a in range(10)]


def _settings(task: str, lora: int | None) -> FineTuneSettings:
    return FineTuneSettings(1e-2, 4, 1, 0.0, 0.0, 100, 16, 0, lora_rank=lora, task=task)


def _train(spec: ModelSpec, task: str, pairs: list[Any], lora: int | None):  # type: ignore[no-untyped-def]
    kind = task_type(task)
    train, evaluation = kind.prepare(pairs, pairs[:4])
    loaded = load_model(spec, kind.num_labels(train), kind.texts(train), 0, task=task)
    finetune(loaded, train, evaluation, _settings(task, lora))
    return loaded, evaluation


def _logits(model, processor, text: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    model.eval()
    with torch.no_grad():
        logits: torch.Tensor = model(**processor(text, return_tensors="pt")).logits
    return logits


def test_lora_on_a_local_checkpoint_is_saved_merged_with_no_trace_of_its_path(
    tmp_path: Path,
) -> None:
    # Prepare: a base checkpoint on disk (a private path), fine-tuned with LoRA from it.
    base_dir = tmp_path / "ZQCANARYCKPT"
    base = load_model(ModelSpec(config=BERT), 2, [t for t, _ in TEXTS], 0)
    base.model.save_pretrained(base_dir)
    base.tokenizer.save_pretrained(base_dir)
    loaded, _ = _train(ModelSpec(path=base_dir), "text-classification", TEXTS, 4)
    assert adapter_base(loaded.model) == str(base_dir)
    # Execute
    method = saved_method(loaded.model)
    save_trained(TrainedModel(loaded.model, loaded.processor, method), tmp_path / "kept")
    # Assert: full weights that plain transformers and our loader load to the same model, and
    # no file names the base's local path (an adapter's config and card would).
    from transformers import AutoModelForSequenceClassification

    kept = tmp_path / "kept"
    files = {p.name for p in kept.iterdir()}
    assert method == "full" and "model.safetensors" in files and "adapter_config.json" not in files
    for path in kept.iterdir():
        assert (
            b"ZQCANARYCKPT" not in path.read_bytes()
            and str(tmp_path).encode() not in path.read_bytes()
        )
    again = load_model(ModelSpec(path=kept), 2, [], 0)
    plain = AutoModelForSequenceClassification.from_pretrained(kept)
    expected = _logits(loaded.model, loaded.processor, "good fine")
    assert torch.allclose(_logits(again.model, again.tokenizer, "good fine"), expected, atol=1e-5)
    assert torch.allclose(_logits(plain, again.tokenizer, "good fine"), expected, atol=1e-5)


# peft looks the base up to see whether its embeddings changed; it is not cached here.
@pytest.mark.filterwarnings("ignore:Could not find a config file in zq-org/tiny-bert")
def test_lora_on_a_public_hub_base_is_saved_as_the_adapter_alone(tmp_path: Path) -> None:
    # Prepare: a LoRA model whose base is named by a public hub id (as when loaded from the
    # cache by that id: no such model is cached here, so the id is set on the adapter).
    base_dir = tmp_path / "base"
    base = load_model(ModelSpec(config=BERT), 2, [t for t, _ in TEXTS], 0)
    base.model.save_pretrained(base_dir)
    base.tokenizer.save_pretrained(base_dir)
    loaded, _ = _train(ModelSpec(path=base_dir), "text-classification", TEXTS, 4)
    next(iter(loaded.model.peft_config.values())).base_model_name_or_path = "zq-org/tiny-bert"
    # Execute
    method = saved_method(loaded.model)
    save_trained(TrainedModel(loaded.model, loaded.processor, method), tmp_path / "kept")
    # Assert
    files = {p.name for p in (tmp_path / "kept").iterdir()}
    assert method == "lora" and "adapter_config.json" in files and "model.safetensors" not in files
    assert '"zq-org/tiny-bert"' in (tmp_path / "kept" / "adapter_config.json").read_text()


def test_a_classifier_keeps_its_label_names_in_sorted_order(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    loaded, _ = _train(ModelSpec(config=BERT), "text-classification", TEXTS, None)
    names = tuple(sorted({label for _, label in TEXTS}))
    save_trained(TrainedModel(loaded.model, loaded.processor, "full", names), tmp_path / "kept")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "kept")
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert model.config.label2id == {"neg": 0, "pos": 1}


def test_lora_on_a_config_built_model_is_saved_merged_as_full_weights(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded, _ = _train(ModelSpec(config=LLAMA), "causal-lm", PAIRS, 4)
    assert adapter_base(loaded.model) == ""
    expected = _logits(loaded.model, loaded.processor, "add 3 and 2")
    save_trained(TrainedModel(loaded.model, loaded.processor, "full"), tmp_path / "kept")
    files = {p.name for p in (tmp_path / "kept").iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "kept")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "kept")
    assert torch.allclose(_logits(model, tokenizer, "add 3 and 2"), expected, atol=1e-4)


def test_a_full_checkpoint_of_each_head_loads_from_its_path(tmp_path: Path) -> None:
    loaded, _ = _train(ModelSpec(config=LLAMA), "causal-lm", PAIRS, None)
    save_trained(TrainedModel(loaded.model, loaded.processor, "full"), tmp_path / "lm")
    again = load_model(ModelSpec(path=tmp_path / "lm"), 0, [], 0, task="causal-lm")
    assert type(again.model).__name__ == "LlamaForCausalLM"
    assert again.tokenizer.pad_token is not None


def test_an_unresolved_artifact_is_refused_in_plain_words() -> None:
    with pytest.raises(ModelLoadError, match="model.artifact names a model this node keeps"):
        load_model(ModelSpec(artifact="0123abcd"), 2, [], 0)


def test_loading_and_saving_draw_no_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: bars on, as in a fresh process (this test must be able to fail).
    from transformers.utils import logging

    logging.enable_progress_bar()
    base = load_model(ModelSpec(config=BERT), 2, [t for t, _ in TEXTS], 0)
    base.model.save_pretrained(tmp_path / "base")
    base.tokenizer.save_pretrained(tmp_path / "base")
    capsys.readouterr()
    # Execute: what tune does with a checkpoint: load it, keep the trained model.
    loaded = load_model(ModelSpec(path=tmp_path / "base"), 2, [], 0)
    save_trained(TrainedModel(loaded.model, loaded.tokenizer, "full"), tmp_path / "kept")
    # Assert
    err = capsys.readouterr().err
    for bar in ("Loading weights", "Writing model shards", "it/s]"):
        assert bar not in err


@dataclass
class HubLoads:
    """What one fresh process printed loading each hub id from one cache, and the
    connections it made to the hub's endpoint (on loopback)."""

    printed: dict[str, str]
    connections: int
    cache: Path
    kept: Path


#: The LoRA trial run on the cached adapter once it is loaded (see the trial's test).
_LORA_TRIAL = """
import torch
from pathlib import Path
from transformers import AutoModelForSequenceClassification
from gridpoint.trainers.finetune import apply_lora
from gridpoint.trainers.saved_model import TrainedModel, save_trained, saved_method
from gridpoint.trainers.tasks import task_type
model = apply_lora(loaded.model, 2, task_type("text-classification"))
with torch.no_grad():
    [w.fill_(0.03) for n, w in model.named_parameters() if "lora_B" in n]
method = saved_method(model)
save_trained(TrainedModel(model, loaded.processor, method), Path(KEPT))
inputs = loaded.processor("good fine great", return_tensors="pt")
model.eval()
back = AutoModelForSequenceClassification.from_pretrained(KEPT).eval()
with torch.no_grad():
    same = torch.allclose(model(**inputs).logits, back(**inputs).logits, atol=1e-5)
print(method, same)
"""


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> HubLoads:
    """_hub_loads, once for all xdist workers (their temporary folders share a parent that
    is the run's own; without xdist that parent is every run's, so it is not used)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _hub_loads(tmp_path_factory.mktemp("hub-loads"))
    shared = tmp_path_factory.getbasetemp().parent
    done = shared / "hub-loads.json"
    with (shared / "hub-loads.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            loads = _hub_loads(shared / "hub-loads")
            done.write_text(
                json.dumps({**asdict(loads), "cache": str(loads.cache), "kept": str(loads.kept)})
            )
    saved = json.loads(done.read_text())
    return HubLoads(
        saved["printed"], saved["connections"], Path(saved["cache"]), Path(saved["kept"])
    )


def _hub_loads(folder: Path) -> HubLoads:
    """Every hub-id case laid out in one Hugging Face cache, then load_model(hub_id) of each
    in one fresh process (a process loading transformers costs seconds of CPU): a checkpoint
    (tiny-cached); a base and a trained-looking LoRA adapter on it (tiny-base, tiny-adapter),
    on which a LoRA trial then runs; an adapter whose base is nowhere (orphan-adapter, on
    absent-base); and an id no cache holds.

    The script imports huggingface_hub before gridpoint, as a user's script may: the offline
    switch gridpoint sets in the environment then comes too late for the hub library, which
    reads it once, at import.
    """
    cache, kept = folder / "hf", folder / "kept"
    base = load_model(ModelSpec(config=BERT), 2, [t for t, _ in TEXTS], 0)
    _cache(cache, "zq-org/tiny-cached", base.model, base.tokenizer)
    _cache(cache, "zq-org/tiny-base", base.model, base.tokenizer)
    other = load_model(ModelSpec(config=BERT), 2, [t for t, _ in TEXTS], 1)
    with warnings.catch_warnings():
        # peft looks an adapter's base up when it saves it, to see whether its embeddings
        # changed; the hub is never reached here.
        warnings.filterwarnings("ignore", "Could not find a config file in zq-org")
        _cache(cache, "zq-org/tiny-adapter", _lora(base.model, "zq-org/tiny-base", moved=True))
        orphan = _lora(other.model, "zq-org/absent-base")
        _cache(cache, "zq-org/orphan-adapter", orphan, other.tokenizer)
    ids = [
        "zq-org/not-in-the-cache",
        "zq-org/tiny-cached",
        "zq-org/tiny-adapter",
        "zq-org/orphan-adapter",
    ]
    code = (
        "import huggingface_hub, transformers\n"
        "from gridpoint.errors import ModelLoadError\n"
        "from gridpoint.trainers.models import load_model\n"
        "from gridpoint.trainers.study_config import ModelSpec\n"
        f"KEPT = {str(kept)!r}\n"
        f"for hub_id in {ids!r}:\n"
        "    try:\n"
        "        loaded = load_model(ModelSpec(hub_id=hub_id), 2, [], 0)\n"
        "        weights = sum(p.double().sum().item() for p in loaded.model.parameters())\n"
        "        print(hub_id, 'loaded', loaded.family, loaded.public_id, f'{weights:.6f}')\n"
        "    except ModelLoadError as exc:\n"
        "        print(hub_id, exc)\n"
        "    if hub_id == 'zq-org/tiny-adapter':\n"
        + "".join(f"        {line}\n" for line in _LORA_TRIAL.strip().splitlines())
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    connections: list[socket.socket] = []
    with loopback_server(connections.append) as port:
        env |= {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(cache)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
        )
    assert out.returncode == 0, out.stderr
    printed: dict[str, str] = {}
    for line in out.stdout.splitlines():
        hub_id, _, rest = line.partition(" ")
        printed[hub_id if hub_id in ids else "lora trial"] = rest if hub_id in ids else line
    return HubLoads(printed, len(connections), cache, kept)


def test_a_model_missing_from_the_cache_is_refused_without_a_request_though_the_hub_loaded_first(
    hub: HubLoads,
) -> None:
    # A hub id that no cache holds, with an endpoint on loopback for huggingface.co: refused
    # in plain words that say what to do, and nothing asked of the hub, not even a model's
    # name (nor by any other load of the same process).
    printed = hub.printed["zq-org/not-in-the-cache"]
    assert "cannot load the base model from the local Hugging Face cache" in printed
    assert "`path =`" in printed and "couldn't connect" not in printed
    assert hub.connections == 0


def test_a_model_in_the_cache_loads_by_its_hub_id_without_a_request(hub: HubLoads) -> None:
    # A small checkpoint laid out as the hub's cache lays out a download: loaded from the
    # cache, named by its hub id, and the hub never asked.
    snapshot = _snapshot(hub.cache, "zq-org/tiny-cached")
    expected = _weights(load_model(ModelSpec(path=snapshot), 2, [], 0).model)
    assert hub.printed["zq-org/tiny-cached"].split() == [
        "loaded",
        "bert",
        "zq-org/tiny-cached",
        expected,
    ]
    assert hub.connections == 0


def test_an_adapter_in_the_cache_loads_by_its_hub_id_merged_into_its_cached_base(
    hub: HubLoads,
) -> None:
    # A base checkpoint and a LoRA adapter on it (weights moved off their zero start, as
    # training leaves them), each cached under its own hub id; the adapter's repo holds no
    # tokenizer, as many on the hub do not.
    from peft import PeftModel

    base_folder = _snapshot(hub.cache, "zq-org/tiny-base")
    merged = PeftModel.from_pretrained(
        load_model(ModelSpec(path=base_folder), 2, [], 0).model,
        str(_snapshot(hub.cache, "zq-org/tiny-adapter")),
    ).merge_and_unload()
    # Assert: the adapter merged into its base, as from a folder, named by the adapter's hub
    # id (its weights are not the base's), and the hub never asked.
    assert hub.printed["zq-org/tiny-adapter"].split() == [
        "loaded",
        "bert",
        "zq-org/tiny-adapter",
        _weights(merged),
    ]
    assert _weights(merged) != _weights(load_model(ModelSpec(path=base_folder), 2, [], 0).model)
    assert hub.connections == 0


def test_a_lora_trial_on_a_cached_adapter_is_saved_merged_and_loads_back_the_same(
    hub: HubLoads,
) -> None:
    # A LoRA trial's model on the cached adapter (its fresh LoRA moved off zero as training
    # would), saved as a kept model is, then loaded back from its folder: saved merged (full
    # weights), never as an adapter naming the bare base, which would have dropped the
    # cached adapter; the folder gives the trial's own outputs.
    assert hub.printed["lora trial"] == "full True", hub.printed
    assert "adapter_config.json" not in {p.name for p in hub.kept.iterdir()}


def test_an_adapter_whose_base_is_not_cached_is_refused_naming_the_cache(hub: HubLoads) -> None:
    # An adapter cached alone, its base (zq-org/absent-base) nowhere: a refusal that names
    # the missing base, and the hub never asked for it.
    assert hub.printed["zq-org/orphan-adapter"].strip() == (
        "cannot load the base model from the local Hugging Face cache: the adapter's base "
        "model 'zq-org/absent-base' is not in the local Hugging Face cache either (gridpoint "
        "never downloads: `hf download zq-org/absent-base` where there is network)"
    )
    assert hub.connections == 0


#: The one commit every test repo in a cache is laid out under.
_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _snapshot(hf_home: Path, hub_id: str) -> Path:
    """The folder the hub's cache keeps hub_id's files in."""
    return hf_home / "hub" / f"models--{hub_id.replace('/', '--')}" / "snapshots" / _COMMIT


def _cache(hf_home: Path, hub_id: str, *saved: Any) -> None:
    """Saves each of `saved` (models, adapters, tokenizers) as the hub's cache lays out a
    download of hub_id."""
    snapshot = _snapshot(hf_home, hub_id)
    for item in saved:
        item.save_pretrained(snapshot)
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text(_COMMIT)


def _weights(model: Any) -> str:
    return f"{sum(p.double().sum().item() for p in model.parameters()):.6f}"


def _lora(model: Any, base: str, moved: bool = False) -> Any:
    """A rank-2 LoRA adapter on model, naming `base` as its base; `moved`: its weights off
    their zero start, as training leaves them (merged, it then changes the model)."""
    from peft import LoraConfig, get_peft_model

    adapter = get_peft_model(
        model, LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS")
    )
    next(iter(adapter.peft_config.values())).base_model_name_or_path = base
    if moved:
        with torch.no_grad():
            for name, weight in adapter.named_parameters():
                if "lora_B" in name:
                    weight.fill_(0.05)
    return adapter


def test_a_full_fine_tune_of_an_adapter_trains_every_weight_of_the_merged_model(
    tmp_path: Path,
) -> None:
    # Prepare: a LoRA adapter folder on a local base checkpoint.
    base = load_model(ModelSpec(config=BERT), 2, [t for t, _ in TEXTS], 0)
    base.model.save_pretrained(tmp_path / "base")
    base.tokenizer.save_pretrained(tmp_path / "base")
    adapter = _lora(base.model, str(tmp_path / "base"))
    adapter.save_pretrained(str(tmp_path / "adapter"))
    base.tokenizer.save_pretrained(tmp_path / "adapter")
    before = load_model(ModelSpec(path=tmp_path / "adapter"), 2, [], 0).model
    # Execute: a trial that fine-tunes every weight (no LoRA of its own).
    loaded, _ = _train(ModelSpec(path=tmp_path / "adapter"), "text-classification", TEXTS, None)
    # Assert: every weight was trainable and the encoder's moved, not the head alone.
    assert all(p.requires_grad for p in loaded.model.parameters())
    after = dict(loaded.model.named_parameters())
    moved = {n for n, p in before.named_parameters() if not torch.equal(p, after[n])}
    assert any(n.startswith("bert.encoder") for n in moved), moved


def _adapter_on(base_path: str, folder: Path) -> None:
    """Saves an adapter on a config-built model, naming base_path as its base."""
    base = load_model(ModelSpec(config=BERT), 2, [t for t, _ in TEXTS], 0)
    adapter = _lora(base.model, base_path)
    # peft would look the named base up to see whether its embeddings changed.
    adapter.save_pretrained(str(folder), save_embedding_layers=False)
    base.tokenizer.save_pretrained(folder)


def test_an_adapter_whose_base_is_under_the_home_folder_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the base saved in the home folder, the adapter naming it as ~/base.
    monkeypatch.setenv("HOME", str(tmp_path))
    base = load_model(ModelSpec(config=BERT), 2, [t for t, _ in TEXTS], 0)
    base.model.save_pretrained(tmp_path / "base")
    base.tokenizer.save_pretrained(tmp_path / "base")
    _adapter_on("~/base", tmp_path / "adapter")
    # Execute
    loaded = load_model(ModelSpec(path=tmp_path / "adapter"), 2, [], 0)
    # Assert
    assert loaded.family == "bert"


def test_an_adapter_missing_its_base_or_weights_is_refused_naming_no_path(tmp_path: Path) -> None:
    # Prepare: one adapter whose base folder is gone, one copied without its weights.
    _adapter_on(str(tmp_path / "gone"), tmp_path / "orphan")
    base = load_model(ModelSpec(config=BERT), 2, [t for t, _ in TEXTS], 0)
    base.model.save_pretrained(tmp_path / "base")
    _adapter_on(str(tmp_path / "base"), tmp_path / "torn")
    (tmp_path / "torn" / "adapter_model.safetensors").unlink()
    # Execute
    with pytest.raises(ModelLoadError) as orphan:
        load_model(ModelSpec(path=tmp_path / "orphan"), 2, [], 0)
    with pytest.raises(ModelLoadError) as torn:
        load_model(ModelSpec(path=tmp_path / "torn"), 2, [], 0)
    # Assert: each says what is missing and where to look, and shows no local path.
    assert "base model folder (base_model_name_or_path in its adapter_config.json" in str(
        orphan.value
    )
    assert "weights (adapter_model.safetensors) are not beside" in str(torn.value)
    assert str(tmp_path) not in str(orphan.value) + str(torn.value)
