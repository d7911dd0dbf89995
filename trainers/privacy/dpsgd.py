"""DP-SGD for the fine-tuning loop, by Opacus: per-example clipping, Poisson sampling, noise.

`private_training` hands back the model wrapped for per-example gradients, the optimizer that
clips each example's gradient to max_grad_norm and adds Gaussian noise of
noise_multiplier x max_grad_norm, and the Poisson-sampled batches (each example in a batch
with probability batch_size / n: the sampling the accountant's events assume; a batch may
draw nobody, and is then an empty dict: `PrivateTraining.no_examples` stands for its pass). Only the
trainable parameters take per-example gradients: with LoRA, the adapters and the head; in
full fine-tuning every parameter but the position and token-type embeddings (frozen: their
input is shared by the whole batch, so their gradient has no per-example split).
`release_model` takes Opacus's hooks off the trained model before it is kept.

Opacus's `secure_mode` is off because it needs torchcsprng, which is not built for current
torch; the noise is drawn instead by torch's generator seeded from os.urandom, with Opacus's
floating-point-attack-resistant sampling (four draws summed, its secure_mode noise) switched on
in the optimizer, which needs no torchcsprng.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from gridpoint.errors import TrainerError

__all__ = ["PrivateTraining", "poisson_schedule", "private_training", "release_model"]


def poisson_schedule(rows: int, batch_size: int) -> tuple[float, int]:
    """(sample rate, steps an epoch) of Opacus's Poisson sampling over rows, as it computes
    them (DPDataLoader: q = 1 / batches of the plain loader; steps = int(1 / q)): the figures
    the accountant must charge."""
    sample_rate = 1 / math.ceil(rows / batch_size)
    return sample_rate, int(1 / sample_rate)


@dataclass
class PrivateTraining:
    """The pieces of a DP-SGD run: wrapped model, private optimizer, sampled batches."""

    model: Any
    optimizer: Any
    batches: Any
    sample_rate: float

    def no_examples(self) -> None:
        """Stands for the forward and backward pass of a batch the sampling drew empty.

        Poisson sampling draws each batch anew, and may draw nobody (with probability
        (1 - q)^n); a transformer cannot take an empty batch. Each trained parameter gets
        zero per-example gradients instead, so the optimizer's step still adds its noise and
        the accountant still counts the step: the sampling the privacy figure assumes.
        """
        import torch

        for param in self.optimizer.params:
            if param.grad_sample is None:
                param.grad_sample = torch.zeros(
                    (0, *param.shape), dtype=param.dtype, device=param.device
                )

    @staticmethod
    @contextmanager
    def quiet_hooks() -> Iterator[None]:
        """Around backward(): torch says Opacus's hooks see no input gradients (embeddings)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            yield


class _Examples:
    """A map-style dataset over encoded examples (Opacus samples their indices)."""

    def __init__(self, features: list[Any]) -> None:
        self._features = features

    def __len__(self) -> int:
        return len(self._features)

    def __getitem__(self, index: int) -> Any:
        return self._features[index]


def private_training(
    model: Any,
    optimizer: Any,
    features: list[Any],
    collate: Callable[[list[Any]], Any],
    *,
    batch_size: int,
    noise_multiplier: float,
    max_grad_norm: float,
) -> PrivateTraining:
    """model, optimizer and batches made private (see the module docstring).

    The batches sampled and the noise added take fresh entropy, never the trial's seed.
    """
    try:
        import torch
        from opacus import PrivacyEngine
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler
    except ImportError as exc:  # pragma: no cover - an install problem, said in one line
        raise TrainerError("privacy mode needs opacus: pip install 'gridpoint[train]'") from exc

    _freeze_shared_embeddings(model)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) in trainable]
    # Poisson sampling by Opacus's own sampler, as its DPDataLoader draws it (each example in
    # each batch with probability q, 1/q batches an epoch), but a batch that draws nobody is
    # handed over as an empty dict: DPDataLoader's stand-in for an empty first batch is built
    # from tensors and fails on the dicts our examples are.
    sample_rate, _ = poisson_schedule(len(features), batch_size)
    loader: Any = torch.utils.data.DataLoader(
        cast(Any, _Examples(features)),
        batch_sampler=UniformWithReplacementSampler(
            num_samples=len(features),
            sample_rate=sample_rate,
            generator=torch.Generator().manual_seed(_entropy()),
        ),
        collate_fn=lambda batch: dict(collate(batch)) if batch else {},
    )
    with warnings.catch_warnings():
        # secure_mode needs torchcsprng (not packaged for current torch): Opacus warns.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp", secure_mode=False)
    private_model, private_optimizer, batches = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        poisson_sampling=False,  # the loader above samples already
        noise_generator=torch.Generator(device=_device_of(model)).manual_seed(_entropy()),
    )
    # The half of secure_mode that needs no torchcsprng (see the module docstring).
    private_optimizer.secure_mode = True
    return PrivateTraining(private_model, private_optimizer, batches, sample_rate)


def _entropy() -> int:
    """A seed from the operating system's entropy: the batches a trial samples and the noise
    it adds must not be reproducible from the study's seed (that would make them removable)."""
    return int.from_bytes(os.urandom(8)) % 2**63


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def _freeze_shared_embeddings(model: Any) -> None:
    """Freezes embeddings whose input is shared by every example of a batch.

    Position and token-type ids are a (1, length) buffer broadcast over the batch: Opacus
    cannot split their gradient per example (Opacus's own BERT example freezes them too).
    """
    import torch

    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Embedding) and ("position" in leaf or "token_type" in leaf):
            module.weight.requires_grad_(False)


def release_model(private_model: Any) -> Any:
    """The trained model without Opacus's per-example hooks and buffers."""
    inner = getattr(private_model, "_module", private_model)
    close = getattr(private_model, "_close", None)
    if close is not None:
        close()
    return inner
