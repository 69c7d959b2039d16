"""Training throughput of the reference models: our trainer against a hand-written loop.

For each reference architecture, on one device, three loops train the same model on the same
images for the same steps and report images per second:

* ``plain``: a hand-written loop as a user would write it (index a uint8 tensor, normalise, crop
  and flip, autocast, AdamW, cosine schedule), the baseline the trainer must stay within 5 % of;
* ``trainer``: ``optuna_deepens.training.TrainingRun`` (what the objective runs);
* ``trainer+compile``: the same with ``torch.compile`` (``--compile-mode``), where asked.

On CUDA the loops use bf16 autocast and channels-last, and the images live on the GPU.
``--models`` picks the architectures, ``--steps`` the timed steps after ``--warmup``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/trainer_throughput.py --device cpu --steps 5
    python benchmarks/trainer_throughput.py --device cuda --compile nb201-32
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
import sys
import time

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from provenance import cpu_model  # noqa: E402
from provenance import git_commit  # noqa: E402

from optuna_deepens.data import ImageData  # noqa: E402
from optuna_deepens.objective import default_build_options  # noqa: E402
from optuna_deepens.training import TrainingConfig  # noqa: E402
from optuna_deepens.training import TrainingRun  # noqa: E402
from optuna_deepens.training import measure_throughput  # noqa: E402
from search_spaces import SPACES  # noqa: E402

# name: (family, reference, image size, batch size), as in shared/docs/gpu-notes.md.
MODELS = {
    "nb201-32": ("nasbench201", "best_cifar10", 32, 256),
    "mobileone_s0-32": ("mobileone", "mobileone_s0", 32, 256),
    "mobileone_s0-224": ("mobileone", "mobileone_s0", 224, 256),
    "swiftformer_xs-224": ("swiftformer", "swiftformer_xs", 224, 256),
    "snapformer_xs-224": ("attention", "snapformer_xs", 224, 256),
    "tiny_moat_0-224": ("moat", "tiny_moat_0", 224, 128),
}
RESULTS = REPO / "benchmarks" / "results"


def build(name: str, device: torch.device) -> torch.nn.Module:
    family, reference, size, _ = MODELS[name]
    space = SPACES[family]
    classes = 10 if family == "nasbench201" else 1000
    options = default_build_options(space, num_classes=classes, image_size=size)
    if family == "attention":
        options["device"] = device  # Match the latency on the device that trains.
    torch.manual_seed(0)
    return space.build(space.REFERENCES[reference], **options)


def images(name: str, n_batches: int, batch: int) -> ImageData:
    _, _, size, _ = MODELS[name]
    n = batch * n_batches
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    classes = 10 if name.startswith("nb201") else 1000
    y = torch.randint(0, classes, (n,), generator=generator)
    return ImageData(x, y, x[:batch], y[:batch], classes, name)


def plain_loop(
    model: torch.nn.Module, data: ImageData, config: TrainingConfig, steps: int, warmup: int
) -> float:
    """What a user writes by hand: the same work as the trainer, inline."""
    device = config.torch_device()
    cuda = device.type == "cuda"
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    x_all = data.x_train.to(device) if cuda else data.x_train
    y_all = data.y_train.to(device) if cuda else data.y_train
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    total = steps + warmup
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    order = torch.randperm(len(x_all), device=x_all.device)
    batch = config.batch_size
    model.train()
    start, done = 0.0, 0
    for step in range(total):
        if step == warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        index = order[(step * batch) % len(x_all) :][:batch]
        x = (x_all[index].to(device).float() / 255 - mean) / std
        n, _, h, w = x.shape
        padded = F.pad(x, (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2,)).tolist()  # One offset per batch: simpler than ours.
        x = padded[:, :, dy : dy + h, dx : dx + w].contiguous()
        x = torch.where(torch.rand(n, 1, 1, 1, device=device) < 0.5, x.flip(3), x)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y_all[index].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step >= warmup:
            done += n
    if cuda:
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def measure(
    name: str,
    device: torch.device,
    steps: int,
    warmup: int,
    compile_mode: str | None,
    batch_size: int | None = None,
) -> dict:
    _, _, size, batch = MODELS[name]
    batch = batch_size or batch
    data = images(name, n_batches=steps + warmup, batch=batch)
    config = TrainingConfig(epochs=1, batch_size=batch, device=str(device))
    row: dict = {"model": name, "image_size": size, "batch_size": batch}
    # Alternate the two eager loops twice and keep each one's best, so a busy moment of the
    # machine does not decide the ratio.
    plain, ours = [], []
    for _ in range(2):
        plain.append(plain_loop(build(name, device), data, config, steps, warmup))
        ours.append(
            measure_throughput(
                TrainingRun(build(name, device), data, config), steps=steps, warmup=warmup
            )
        )
    row["plain"] = max(plain)
    row["trainer"] = max(ours)
    row["trainer_over_plain_time"] = row["plain"] / row["trainer"]
    if compile_mode is not None:
        compiled = dataclasses.replace(
            config, compile=compile_mode if compile_mode != "default" else True
        )
        started = time.perf_counter()
        run = TrainingRun(build(name, device), data, compiled)
        measure_throughput(run, steps=1, warmup=2)  # Compilation happens here.
        row["compile_seconds"] = time.perf_counter() - started
        row[f"trainer+compile({compile_mode})"] = measure_throughput(
            run, steps=steps, warmup=warmup
        )
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", nargs="*", default=[], help="models to also time compiled")
    parser.add_argument("--compile-mode", default="reduce-overhead")
    parser.add_argument("--batch-size", type=int, help="override every model's batch size")
    parser.add_argument(
        "--out", default=None, help="JSON file (default: results/trainer_<device>.json)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [
        measure(
            name,
            device,
            args.steps,
            args.warmup,
            args.compile_mode if name in args.compile else None,
            args.batch_size,
        )
        for name in args.models
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    payload = {
        "commit": git_commit(),
        "device": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "rows": rows,
    }
    out = Path(args.out) if args.out else RESULTS / f"trainer_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    ratios = [row["trainer_over_plain_time"] for row in rows]
    print(
        f"trainer time / plain loop time: {min(ratios):.3f}-{max(ratios):.3f} "
        f"(geometric mean {math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f})"
    )


if __name__ == "__main__":
    main()
