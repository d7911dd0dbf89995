"""Image classification: one label per image (PIL images or arrays from the pipeline).

Images are resized and normalized once by the model's image processor (a checkpoint's own,
or for a config-built model one at its config's image size); every image then has the same
shape, so batches are stacked, not padded. Accuracy and macro F1. The descriptor's image-size
bucket comes from the images' own sizes, before resizing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gridpoint.errors import PipelineError
from gridpoint.schema import TaskDescriptor
from gridpoint.schema.vocabulary import balance_bucket, image_size_bucket, size_bucket
from gridpoint.trainers.tasks.base import Features, Scorer, TaskType, label_index
from gridpoint.trainers.tasks.classification import ClassificationScorer

__all__ = ["ImageClassification", "LabeledImages"]


@dataclass(frozen=True)
class LabeledImages:
    """RGB PIL images with integer labels; label_names are the private names."""

    images: list[Any]
    labels: list[int]
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.images)


def _rgb(image: Any, which: str, index: int) -> Any:
    """A PIL image in RGB, from a PIL image or an (H, W), (H, W, 1|3|4) array."""
    import numpy as np
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise PipelineError(f"{which} split item {index}: an image must be (H, W) or (H, W, 3)")
    if array.dtype != np.uint8:
        # Floats in [0, 1] are the usual alternative to 8-bit pixels.
        array = (
            (np.clip(array, 0, 1) * 255).astype(np.uint8)
            if array.dtype.kind == "f"
            else array.astype(np.uint8)
        )
    return Image.fromarray(array).convert("RGB")


class ImageClassification(TaskType):
    name = "image-classification"
    auto_class_name = "AutoModelForImageClassification"
    lora_modules_to_save = ("classifier",)
    pair_name = "(image, label) pair"

    def prepare(
        self, train: list[tuple[Any, Any]], evaluation: list[tuple[Any, Any]]
    ) -> tuple[LabeledImages, LabeledImages]:
        if len(train) < 2 or len(evaluation) < 1:
            raise PipelineError("the train split needs at least 2 examples and eval at least 1")
        index = label_index([str(t) for _, t in train], [str(t) for _, t in evaluation])
        names = list(index)

        def labeled(pairs: list[tuple[Any, Any]], which: str) -> LabeledImages:
            return LabeledImages(
                [_rgb(image, which, i) for i, (image, _) in enumerate(pairs)],
                [index[str(t)] for _, t in pairs],
                names,
            )

        return labeled(train, "train"), labeled(evaluation, "eval")

    def describe(self, train: LabeledImages, language: str) -> TaskDescriptor:
        return TaskDescriptor(
            type=self.name,
            num_labels=len(set(train.labels)),
            size_bucket=size_bucket(len(train)),
            balance_bucket=balance_bucket(train.labels),
            image_size_bucket=image_size_bucket([image.size for image in train.images]),
        )

    def config_kwargs(self, num_labels: int, processor: Any) -> dict[str, Any]:
        return {"num_labels": num_labels}

    def config_processor(self, train_texts: list[str], settings: dict[str, Any]) -> Any:
        # The PIL backend: the default one needs torchvision, which the trainers do not.
        from transformers import ViTImageProcessorPil

        side = int(settings.get("image_size", 224))
        return ViTImageProcessorPil(size={"height": side, "width": side})

    def pretrained_processor(self, source: str) -> Any:
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(source, local_files_only=True)

    def features(self, processor: Any, data: LabeledImages, max_length: int) -> list[Features]:
        out: list[Features] = []
        for start in range(0, len(data), 256):
            pixels = processor(images=data.images[start : start + 256], return_tensors="pt")[
                "pixel_values"
            ]
            out += [
                {"pixel_values": p, "labels": label}
                for p, label in zip(pixels, data.labels[start : start + 256], strict=True)
            ]
        return out

    def collator(self, processor: Any) -> Callable[[list[Features]], dict[str, Any]]:
        import torch

        def stack(features: list[Features]) -> dict[str, Any]:
            return {
                "pixel_values": torch.stack([f["pixel_values"] for f in features]),
                "labels": torch.tensor([f["labels"] for f in features]),
            }

        return stack

    def length(self, features: Features) -> int:
        return 1

    def scorer(self) -> Scorer:
        return ClassificationScorer()
