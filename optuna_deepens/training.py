"""Training one architecture: a plain PyTorch loop with the options a NAS study needs.

AdamW with a cosine learning-rate schedule (one warm-up epoch) and label smoothing by default,
as most efficient-network recipes, including the thesis's. On CUDA, bf16 autocast and the
channels-last memory format by default; ``torch.compile`` on request (it costs one to two
minutes per architecture, which pays only for long trainings). The loop's state (model,
optimiser, schedule, epoch, accuracy history, random generator) is one dict of tensors and
numbers, so a checkpoint is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from optuna_deepens._validation import check_choice
from optuna_deepens._validation import check_float
from optuna_deepens._validation import check_int
from optuna_deepens._validation import check_type
from optuna_deepens.data import Batches
from optuna_deepens.data import ImageData

OPTIMIZERS = ("adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")


# torch.compile's documented modes, when this torch cannot list its own.
_DOCUMENTED_COMPILE_MODES = (
    "default",
    "reduce-overhead",
    "max-autotune",
    "max-autotune-no-cudagraphs",
)


def _compile_modes() -> tuple[str, ...]:
    try:
        from torch._inductor import list_mode_options
    except ImportError:
        return _DOCUMENTED_COMPILE_MODES
    return tuple(list_mode_options())


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the architecture or recipe diverged."""


@dataclass(frozen=True)
class TrainingConfig:
    """How every architecture of a study is trained.

    Args:
        epochs: Full training length; a multi-fidelity sampler may ask fewer for short runs.
        batch_size: Training batch size.
        learning_rate: Peak learning rate, reached after ``warmup_epochs``.
        weight_decay: Decoupled weight decay (AdamW) or L2 (SGD).
        label_smoothing: Of the cross-entropy loss.
        optimizer: ``"adamw"`` or ``"sgd"`` (Nesterov, ``momentum``).
        warmup_epochs: Linear warm-up before the cosine decay (capped at a third of the run).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        bf16: bf16 autocast; ``None``: on CUDA only.
        channels_last: Channels-last memory format; ``None``: on CUDA only.
        compile: ``torch.compile`` the model (``True``, or a mode such as
            ``"reduce-overhead"``, which uses CUDA graphs and helps small, launch-bound nets).
        augment: Random crop (padding 4) and horizontal flip of training images.
        seed: Base seed; trial ``n`` trains with ``seed + n``, so reruns agree.
        eval_batch_size: Batch size of validation.
    """

    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    optimizer: str = "adamw"
    momentum: float = 0.9
    warmup_epochs: int = 1
    device: str = "auto"
    bf16: bool | None = None
    channels_last: bool | None = None
    compile: bool | str = False
    augment: bool = True
    seed: int = 0
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        owner = "TrainingConfig"
        check_int(owner, "epochs", self.epochs, minimum=1)
        check_int(owner, "batch_size", self.batch_size, minimum=1)
        check_int(owner, "eval_batch_size", self.eval_batch_size, minimum=1)
        check_int(owner, "warmup_epochs", self.warmup_epochs, minimum=0)
        check_int(owner, "seed", self.seed, minimum=0)
        check_float(owner, "learning_rate", self.learning_rate, positive=True)
        check_float(owner, "weight_decay", self.weight_decay, non_negative=True)
        check_float(owner, "momentum", self.momentum, non_negative=True)
        smoothing = check_float(owner, "label_smoothing", self.label_smoothing, non_negative=True)
        if smoothing >= 1:
            raise ValueError(f"{owner}(label_smoothing={smoothing}): must be below 1.")
        check_choice(owner, "optimizer", self.optimizer, OPTIMIZERS)
        if self.optimizer == "sgd" and self.momentum <= 0:
            raise ValueError(
                f"{owner}(momentum={self.momentum}): SGD here uses Nesterov momentum, which "
                "needs momentum > 0 (e.g. 0.9); or use optimizer='adamw'."
            )
        check_type(owner, "augment", self.augment, bool, optional=False)
        check_type(owner, "bf16", self.bf16, bool)
        check_type(owner, "channels_last", self.channels_last, bool)
        check_type(owner, "compile", self.compile, (bool, str), optional=False)
        if isinstance(self.compile, str) and self.compile not in _compile_modes():
            raise ValueError(
                f"{owner}(compile={self.compile!r}): choose True, False or one of "
                f"torch.compile's modes {_compile_modes()}."
            )
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(
                f"{owner}(device={self.device!r}): choose one of {DEVICES} or 'cuda:N'."
            )
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"{owner}(device={self.device!r}): CUDA is not available here; use "
                "device='auto' or 'cpu'."
            )

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


class TrainingRun:
    """One architecture's training: call :meth:`train_epoch` and :meth:`evaluate` per epoch.

    Args:
        model: An untrained model (moved to the config's device here).
        data: The images; moved to the device once when they fit comfortably in its memory.
        config: The recipe.
        epochs: This run's length (the schedule's length); the config's by default.
        seed: Seeds initialisation order, batches and augmentation.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data: ImageData,
        config: TrainingConfig,
        *,
        epochs: int | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config
        self.device = config.torch_device()
        cuda = self.device.type == "cuda"
        self.epochs = (
            config.epochs
            if epochs is None
            else check_int("TrainingRun", "epochs", epochs, minimum=1, why="a run trains")
        )
        self.bf16 = cuda if config.bf16 is None else config.bf16
        self.channels_last = cuda if config.channels_last is None else config.channels_last
        self.epoch = 0
        self.history: list[float] = []
        self.generator = torch.Generator().manual_seed(seed)
        self.data = _on_device(data, self.device)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward = model
        if config.compile:
            mode = None if config.compile is True else str(config.compile)
            self.forward = torch.compile(model, mode=mode)
        self.train_batches = Batches(
            self.data,
            batch_size=config.batch_size,
            train=True,
            device=self.device,
            generator=self.generator,
            augment=config.augment,
            channels_last=self.channels_last,
        )
        self.val_batches = Batches(
            self.data,
            batch_size=config.eval_batch_size,
            train=False,
            device=self.device,
            channels_last=self.channels_last,
        )
        self.optimizer = _optimizer(model, config)
        steps = max(1, self.epochs * len(self.train_batches))
        warmup = min(config.warmup_epochs * len(self.train_batches), steps // 3)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _WarmupCosine(warmup, steps)
        )

    def train_epoch(self) -> float:
        """One pass over the training images; the mean loss. Raises on a non-finite loss."""
        self.model.train()
        total = torch.zeros((), device=self.device)
        count = 0
        for x, y in self.train_batches:
            total += self.step(x, y) * len(y)
            count += len(y)
        mean = float(total) / max(count, 1)  # One device sync per epoch, not per step.
        self.epoch += 1
        if not math.isfinite(mean):
            raise NonFiniteLossError(f"the training loss is {mean} in epoch {self.epoch}")
        return mean

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step on a batch; the loss, detached, without a device sync."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = F.cross_entropy(self.forward(x), y, label_smoothing=self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    @torch.no_grad()
    def evaluate(self) -> float:
        """Top-1 accuracy on the validation images, in ``[0, 1]``."""
        self.model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        count = 0
        for x, y in self.val_batches:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.forward(x)
            correct += (logits.argmax(1) == y).sum()
            count += len(y)
        return float(correct) / count

    def run_epoch(self) -> float:
        """Train one epoch, evaluate, and record the accuracy; returns it."""
        self.train_epoch()
        accuracy = self.evaluate()
        self.history.append(accuracy)
        return accuracy

    # ------------------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        """Everything needed to continue this run, loadable with ``weights_only=True``."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "epochs": self.epochs,
            "history": list(self.history),
            "generator": self.generator.get_state(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        if int(state["epochs"]) != self.epochs:
            raise ValueError(
                f"The checkpoint is of a {state['epochs']}-epoch run; this run has {self.epochs}."
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.history = [float(v) for v in state["history"]]
        self.generator.set_state(state["generator"])


def measure_throughput(run: TrainingRun, *, steps: int = 30, warmup: int = 5) -> float:
    """Training images per second of ``run.step`` over ``steps`` batches after ``warmup``.

    Batches come from the run's own loader, so this times exactly what an epoch does.
    """
    run.model.train()
    batches = iter(run.train_batches)
    done, start = 0, 0.0
    for i in range(warmup + steps):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(run.train_batches)
            x, y = next(batches)
        if i == warmup:
            _synchronize(run.device)
            start = time.perf_counter()
        run.step(x, y)
        if i >= warmup:
            done += len(y)
    _synchronize(run.device)
    return done / (time.perf_counter() - start)


class _WarmupCosine:
    """Linear warm-up to the peak, then cosine decay to zero, by optimiser step."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _optimizer(model: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and normalisation weights, as in timm and most recipes.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.learning_rate, momentum=config.momentum, nesterov=True
        )
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def _on_device(data: ImageData, device: torch.device) -> ImageData:
    """The data on ``device`` when it takes under a quarter of the free memory; else as is."""
    if device.type != "cuda" or data.x_train.device == device:
        return data
    free, _ = torch.cuda.mem_get_info(device)
    return data.to(device) if data.nbytes() < free / 4 else data


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
