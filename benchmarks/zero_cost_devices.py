"""Zero-cost metrics of every search space's published architectures, on the CPU or a GPU.

::

    python benchmarks/zero_cost_devices.py --device cuda          # batch 1 and 64, fp32
    python benchmarks/zero_cost_devices.py --device cpu --quick   # 2 small models, 64 px (~10 s)

Each ``REFERENCES`` entry of ``search_spaces.SPACES`` is built (NAS-Bench-201 at 32 px with 10
classes, the others at 224 px with 1000 classes; MobileOne both as trained and reparameterised by
``search_spaces.reparameterize``) and measured by ``optuna_deepens.zero_cost.measure`` on
``--device``: params and FLOPs per image, and latency and peak memory at each of
``--batch-sizes``, in fp32 with PyTorch's default TF32 settings (recorded). On a GPU each model's
FLOPs and memory at batch 1 are also counted on the CPU, which checks that the two devices agree:
FLOPs exactly, memory up to allocator rounding and kernel workspaces. Results go to
``<out>/zero_cost_<cpu|cuda>[-quick].{json,md}`` and are rewritten after every model, so a run
that is stopped early keeps what it measured. The exit status is 1 if any model failed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import datetime
import functools
import json
from pathlib import Path
import platform
import sys
import time
from types import ModuleType
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # Sibling modules.

from provenance import cpu_model  # noqa: E402
from provenance import git_commit  # noqa: E402
from provenance import git_dirty  # noqa: E402

from optuna_deepens import zero_cost  # noqa: E402
import search_spaces  # noqa: E402
from search_spaces import reparameterize  # noqa: E402

# NAS-Bench-201 is a CIFAR benchmark; every other space is an ImageNet one.
SETTINGS: dict[str, tuple[int, int]] = {"nasbench201": (32, 10)}  # resolution, classes
IMAGENET = (224, 1000)
FUSED_SPACES = ("mobileone",)
QUICK = (("nasbench201", "resnet"), ("mobileone", "mobileone_s0"))
QUICK_RESOLUTION = 64


@dataclass(frozen=True)
class Architecture:
    """A published architecture of a search space, built on the CPU by ``build()``."""

    space: str
    name: str
    fused: bool
    resolution: int
    num_classes: int
    build: Callable[[], nn.Module]

    @property
    def label(self) -> str:
        return f"{self.name} (fused)" if self.fused else self.name


def _build(module: ModuleType, config: Any, num_classes: int, fused: bool) -> nn.Module:
    model = module.build(config, num_classes=num_classes)
    # Fusion reads the BatchNorm statistics, hence eval mode first.
    return reparameterize(model.eval()) if fused else model


def architectures(resolution: int = IMAGENET[0]) -> list[Architecture]:
    """Every reference architecture; ``resolution`` replaces 224 px (NAS-Bench-201 keeps 32)."""
    out = []
    for space, module in search_spaces.SPACES.items():
        res, classes = SETTINGS.get(space, (resolution, IMAGENET[1]))
        for name, config in module.REFERENCES.items():
            for fused in (False, True) if space in FUSED_SPACES else (False,):
                build = functools.partial(_build, module, config, classes, fused)
                out.append(Architecture(space, name, fused, res, classes, build))
    return out


def quick_architectures() -> list[Architecture]:
    """Two small models at a small resolution: a smoke test of the script on any device."""
    return [a for a in architectures(QUICK_RESOLUTION) if (a.space, a.name) in QUICK]


# --------------------------------------------------------------------------------------------
# Measuring.


def measure_architecture(
    arch: Architecture,
    device: torch.device,
    batch_sizes: Sequence[int],
    *,
    min_run_time: float,
    n_threads: int,
) -> dict[str, Any]:
    """One result row; on a GPU also the CPU's FLOPs and memory count at batch 1."""
    start = time.perf_counter()
    model = arch.build()
    x = torch.randn(1, 3, arch.resolution, arch.resolution)
    row: dict[str, Any] = {
        "space": arch.space,
        "architecture": arch.name,
        "fused": arch.fused,
        "resolution": arch.resolution,
        "num_classes": arch.num_classes,
    }
    if device.type != "cpu":
        cpu = zero_cost.measure(model, x, metrics=["flops", "memory_mb"], name=arch.label)
        row["cpu_flops"], row["cpu_memory_mb_batch1"] = cpu["flops"], cpu["memory_mb"]
    model, x = model.to(device), x.to(device)
    row.update(zero_cost.measure(model, x, metrics=["params", "flops"], name=arch.label))
    row["latency_ms"], row["memory_mb"] = {}, {}
    for batch_size in batch_sizes:
        measured = zero_cost.measure(
            model,
            x,
            metrics=["latency_ms", "memory_mb"],
            batch_size=batch_size,
            min_run_time=min_run_time,
            n_threads=n_threads,
            name=arch.label,
        )
        row["latency_ms"][str(batch_size)] = measured["latency_ms"]
        row["memory_mb"][str(batch_size)] = measured["memory_mb"]
    row["seconds"] = time.perf_counter() - start
    return row


def _release(device: torch.device) -> None:
    # Each model starts from an empty allocator cache, so its numbers do not depend on the order.
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# Provenance and output.


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def environment(device: torch.device) -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "commit": git_commit(),
        "edited": git_dirty("optuna_deepens", "search_spaces"),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        env["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    return env


def _cell(row: dict[str, Any], key: str, batch_size: int, digits: int) -> str:
    value = row.get(key, {}).get(str(batch_size))
    return "-" if value is None else f"{value:.{digits}f}"


def _flops_check(row: dict[str, Any]) -> str:
    if "cpu_flops" not in row or "flops" not in row:
        return "-"
    return "yes" if row["cpu_flops"] == row["flops"] else f"NO ({row['cpu_flops'] / 1e9:.3f})"


def _heading(env: dict[str, Any], settings: dict[str, Any]) -> str:
    gpu = ""
    if "cuda" in env:
        gpu = (
            f" (CUDA {env['cuda']}, cuDNN {env['cudnn']}; TF32 matmul {env['tf32_matmul']}, "
            f"TF32 cuDNN {env['tf32_cudnn']})"
        )
    commit = env["commit"] or "unknown commit"
    edited = " with uncommitted edits" if env["edited"] else ""
    return (
        f"Measured {env['date']} on {env['device_name']} (`{env['device']}`), torch "
        f"{env['torch']}{gpu}, Python {env['python']}, fp32, {settings['threads']} CPU "
        f"thread(s) while timing, at {commit}{edited}.\n\n"
        "Params and FLOPs per image (FLOPs = 2 per multiply-add, as counted by "
        "`torch.utils.flop_counter`); latency is the median of `torch.utils.benchmark` blocks "
        f"(min_run_time {settings['min_run_time']} s); memory is parameters and buffers plus the "
        "peak of the forward pass's tensors, in MiB, input excluded."
    )


def markdown(rows: Sequence[dict[str, Any]], env: dict[str, Any], settings: dict[str, Any]) -> str:
    """The results as a Markdown table under a paragraph of provenance."""
    batch_sizes = settings["batch_sizes"]
    compare = any("cpu_flops" in row for row in rows)
    header = ["space", "architecture", "px", "params (M)", "GFLOPs"]
    header += [f"latency ms b{b}" for b in batch_sizes]
    header += [f"memory MiB b{b}" for b in batch_sizes]
    if compare:
        header += ["CPU-count memory MiB b1", "FLOPs = CPU"]
    lines = [_heading(env, settings), "", "| " + " | ".join(header) + " |"]
    lines.append("|---|---|" + "---:|" * (len(header) - 2))
    for row in rows:
        label = f"{row['architecture']} (fused)" if row["fused"] else row["architecture"]
        if "error" in row:
            error = row["error"].splitlines()[0][:200].replace("|", "/")
            lines.append(f"| {row['space']} | {label} | {row['resolution']} | {error} |")
            continue
        cells = [row["space"], label, str(row["resolution"])]
        cells += [f"{row['params'] / 1e6:.2f}", f"{row['flops'] / 1e9:.3f}"]
        cells += [_cell(row, "latency_ms", b, 2) for b in batch_sizes]
        cells += [_cell(row, "memory_mb", b, 1) for b in batch_sizes]
        if compare:
            cpu_memory = row.get("cpu_memory_mb_batch1")
            cells += ["-" if cpu_memory is None else f"{cpu_memory:.1f}", _flops_check(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(out: Path, stem: str, rows: list[dict], env: dict, settings: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = {"environment": env, "settings": settings, "rows": rows}
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(rows, env, settings))


# --------------------------------------------------------------------------------------------
# Command line.


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--min-run-time", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads while timing")
    parser.add_argument("--quick", action="store_true", help="2 small models, 64 px, batch 1")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    if min(args.batch_sizes) < 1:
        parser.error("--batch-sizes must be positive")
    if args.quick:
        args.batch_sizes, args.min_run_time = [1], 0.05
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    archs = quick_architectures() if args.quick else architectures()
    settings = {
        "batch_sizes": args.batch_sizes,
        "min_run_time": args.min_run_time,
        "threads": args.threads,
        "quick": args.quick,
    }
    env = environment(args.device)
    stem = f"zero_cost_{args.device.type}" + ("-quick" if args.quick else "")
    rows: list[dict[str, Any]] = []
    for i, arch in enumerate(archs, 1):
        try:
            row = measure_architecture(
                arch,
                args.device,
                args.batch_sizes,
                min_run_time=args.min_run_time,
                n_threads=args.threads,
            )
            print(f"[{i}/{len(archs)}] {arch.label}: {row['seconds']:.1f} s", flush=True)
        except Exception as err:  # One failing model must not lose the others' results.
            row = {"space": arch.space, "architecture": arch.name, "fused": arch.fused}
            row.update(resolution=arch.resolution, error=f"{type(err).__name__}: {err}")
            print(f"[{i}/{len(archs)}] {arch.label}: FAILED {row['error']}", flush=True)
        _release(args.device)
        rows.append(row)
        write(args.out, stem, rows, env, settings)
    print(markdown(rows, env, settings))
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
