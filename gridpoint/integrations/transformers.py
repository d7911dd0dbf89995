"""`GridpointCallback`: a Hugging Face `TrainerCallback` that publishes the run it watches.

    from gridpoint.integrations.transformers import GridpointCallback
    trainer = Trainer(..., callbacks=[GridpointCallback(home="~/gridpoint",
                                                        task="text-classification",
                                                        study="sentiment-v2")])

Each evaluation adds its metrics to the curve (at the optimizer step it ran at); each training
log adds the training loss. At the end of training one anonymized, signed record goes into the
home's catalog, as `gridpoint tune` publishes a trial: hyperparameters read from
`TrainingArguments` (learning rate, effective batch size, epochs, warmup ratio, weight decay,
LoRA rank) through the anonymizer's allowlist, the task descriptor measured on the train dataset
where it is, the base model only as a public hub id. The full private record (output folder,
every training argument, every metric) stays in the home's store. TRL's trainers subclass
`Trainer` and take the same callback.

Must never: publish from a process other than the main one, send a path, a run name, a row or a
label name anywhere, or make training fail because a record could not be published (it logs).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from gridpoint.errors import GridpointError
from gridpoint.integrations.foreign_run import ForeignRun, ModelRef
from gridpoint.integrations.sink import HomeSink, Outcome, open_home
from gridpoint.integrations.task import describe_dataset
from gridpoint.node.home import NodeHome
from gridpoint.schema import CurvePoint, TaskDescriptor
from gridpoint.schema.vocabulary import public_hub_id

__all__ = ["GridpointCallback"]

_log = logging.getLogger("gridpoint.integrations")
#: What the Trainer logs about itself rather than about the model: never collected.
_BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "flos", "grad_norm")
_NOT_RESULTS = ("epoch", "learning_rate", "total_flos", "num_input_tokens_seen")


def _is_result(name: str, value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and name not in _NOT_RESULTS
        and not name.endswith(_BOOKKEEPING)
    )


def hyperparameters(args: TrainingArguments, model: Any) -> dict[str, object]:
    """The run's hyperparameters in the vocabulary's names, read from its arguments and model."""
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
    params: dict[str, object] = {
        "learning_rate": args.learning_rate,
        "batch_size": batch * max(1, args.world_size),
        "weight_decay": args.weight_decay,
    }
    if args.max_steps <= 0 and float(args.num_train_epochs).is_integer():
        params["epochs"] = int(args.num_train_epochs)
    ratio = getattr(args, "warmup_ratio", None)
    warmup_steps = getattr(args, "warmup_steps", 0)
    if ratio is None and isinstance(warmup_steps, float) and 0 < warmup_steps < 1:
        ratio = warmup_steps  # transformers 5 takes a ratio as a float warmup_steps
    if ratio is not None or not warmup_steps:
        params["warmup_ratio"] = float(ratio or 0.0)
    peft = getattr(model, "peft_config", None)
    if isinstance(peft, dict) and peft:
        rank = getattr(next(iter(peft.values())), "r", None)
        if isinstance(rank, int):
            params["lora_rank"] = rank
    return params


def model_ref(model: Any, public_model_id: str) -> ModelRef:
    """The model as a record may name it: a local checkpoint's path never becomes its id."""
    config = getattr(model, "config", None)
    base = getattr(model, "base_model", model) if hasattr(model, "peft_config") else model
    name = public_model_id
    if not name and config is not None:
        candidate = str(getattr(config, "_name_or_path", "") or "")
        # A name that is a folder here was loaded from disk: private, whatever it looks like.
        name = candidate if candidate and not os.path.exists(candidate) else ""
    count = base.num_parameters() if hasattr(base, "num_parameters") else 0
    return ModelRef(
        public_id=public_hub_id(name),
        family=str(getattr(config, "model_type", "") or ""),
        num_parameters=int(count),
        lora=hasattr(model, "peft_config"),
    )


class GridpointCallback(TrainerCallback):
    """Records each evaluation as a curve point; publishes one record when training ends."""

    def __init__(
        self,
        home: str | Path | NodeHome | None = None,
        task: str | TaskDescriptor = "text-classification",
        study: str = "trainer",
        *,
        language: str = "",
        train_dataset: Any = None,
        public_model_id: str = "",
    ) -> None:
        """home: a node home (default $GRIDPOINT_HOME); task: a task type or a descriptor.

        With a task type, the descriptor is measured on train_dataset, else on the Trainer's
        own train dataset. study is the private study name (only a keyed pseudonym leaves).
        public_model_id names the base model when it was loaded from a local folder.
        """
        self._home = open_home(home)
        self._task = task
        self._language = language
        self._train_dataset = train_dataset
        self._public_model_id = public_model_id
        self.study = study
        self._curve: list[CurvePoint] = []
        self._final: dict[str, float] = {}
        self._descriptor: TaskDescriptor | None = None
        #: What happened at the end of training (None before, or on a process that is not the main one).
        self.outcome: Outcome | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._curve, self._final = [], {}
        if isinstance(self._task, TaskDescriptor):
            self._descriptor = self._task
            return
        loader = kwargs.get("train_dataloader")
        dataset = self._train_dataset
        if dataset is None and loader is not None:
            dataset = getattr(loader, "dataset", None)
        if dataset is None:
            raise GridpointError(
                "GridpointCallback cannot see the train dataset: pass train_dataset= or "
                "task=gridpoint.TaskDescriptor(...)"
            )
        self._descriptor = describe_dataset(dataset, self._task, self._language)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        metrics = kwargs.get("metrics") or {}
        step = int(state.global_step)
        for name, value in sorted(metrics.items()):
            if _is_result(name, value):
                self._curve.append(CurvePoint(step, name, float(value)))
                self._final[name] = float(value)

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        logs = kwargs.get("logs") or {}
        if "loss" in logs and _is_result("loss", logs["loss"]):
            self._curve.append(CurvePoint(int(state.global_step), "loss", float(logs["loss"])))
        if "train_loss" in logs and _is_result("train_loss", logs["train_loss"]):
            self._final["train_loss"] = float(logs["train_loss"])

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or self._descriptor is None:
            return
        model = kwargs.get("model")
        run = ForeignRun(
            source_key=f"transformers:{uuid.uuid4().hex}",
            study=self.study,
            state="complete",
            params=hyperparameters(args, model),
            curve=tuple(self._curve),
            metrics=dict(self._final),
            objective_metric=_objective(args, self._final),
            objective_direction="maximize" if args.greater_is_better else "minimize",
            finished_at=datetime.now(UTC),
            private={
                "output_dir": str(args.output_dir),
                "training_arguments": json.dumps(args.to_dict(), default=str),
            },
        )
        try:
            with HomeSink(self._home) as sink:
                self.outcome = sink.add(
                    run, self._descriptor, model_ref(model, self._public_model_id)
                )
        except GridpointError as exc:
            _log.warning("gridpoint: this training run was not published: %s", exc)
            return
        left = sorted({n.name for n in self.outcome.left_out})
        if left:
            _log.info(
                "gridpoint: kept private (outside the published vocabulary): %s", ", ".join(left)
            )


def _objective(args: TrainingArguments, final: dict[str, float]) -> str:
    """The metric the Trainer selects models by, else eval_loss when there is one."""
    chosen = args.metric_for_best_model
    if chosen:
        return chosen if chosen.startswith("eval_") else f"eval_{chosen}"
    return "eval_loss" if "eval_loss" in final else ""
