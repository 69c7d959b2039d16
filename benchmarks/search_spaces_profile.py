"""Profile every search space: time of ``suggest``, ``build`` and zero-cost profiling, and size.

::

    python benchmarks/search_spaces_profile.py            # 5 samples per space, 224 px
    python benchmarks/search_spaces_profile.py --quick    # 2 samples per space, 64 px (~1 min)
    python benchmarks/search_spaces_profile.py --readme   # also put the table in README.md

For each space of ``search_spaces.SPACES`` (plus the filtered MobileOne space), random samples
are drawn with a seeded ``RandomSampler``; per sample we time ``suggest(trial)`` alone (not
``study.ask``), ``build(config)`` and ``optuna_deepens.zero_cost.measure`` (params, FLOPs,
latency, peak memory on one CPU thread, batch 1). NAS-Bench-201 runs at its CIFAR size, 32 px.
The attention space is sampled with ``search_width=True``: its default, a latency-matched width,
times a binary search of networks on the first build of each design; ``--match-width`` times one
such search instead. Results go to ``benchmarks/results/search_spaces_profile.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import platform
import statistics
import sys
import time
from typing import Any

import optuna
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optuna_deepens import zero_cost  # noqa: E402
import search_spaces  # noqa: E402

START = "<!-- search-spaces-profile:start -->"
END = "<!-- search-spaces-profile:end -->"


def _variants() -> dict[str, dict[str, Any]]:
    """Space name -> module, suggest, build keyword arguments, input size and space size."""
    spaces = search_spaces.SPACES
    out: dict[str, dict[str, Any]] = {}
    for name, module in spaces.items():
        entry: dict[str, Any] = {
            "module": module,
            "suggest": module.suggest,
            "build_kwargs": {},
            "resolution": None,
            "size": getattr(module, "SPACE_SIZE", None),
        }
        if name == "nasbench201":
            entry["resolution"] = 32
            entry["build_kwargs"] = {"num_classes": 10}
        if name == "attention":
            entry["suggest"] = lambda trial, m=module: m.suggest(trial, search_width=True)
        out[name] = entry
        if name == "mobileone":
            out["mobileone (filtered)"] = {
                **entry,
                "suggest": lambda trial, m=module: m.suggest(trial, filtered=True),
                "size": module.filtered_space_size,  # called after timing the first suggest
            }
    return out


def profile(samples: int, resolution: int, seed: int, min_run_time: float) -> list[dict]:
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for name, entry in _variants().items():
        res = entry["resolution"] or resolution
        x = torch.randn(1, 3, res, res)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        times: dict[str, list[float]] = {"suggest": [], "build": [], "profile": []}
        metrics: dict[str, list[float]] = {}
        for _ in range(samples):
            trial = study.ask()
            start = time.perf_counter()
            config = entry["suggest"](trial)
            t_suggest = time.perf_counter() - start
            study.tell(trial, 0.0)
            start = time.perf_counter()
            model = entry["module"].build(config, **entry["build_kwargs"])
            t_build = time.perf_counter() - start
            start = time.perf_counter()
            measured = zero_cost.measure(model, x, min_run_time=min_run_time)
            t_profile = time.perf_counter() - start
            times["suggest"].append(t_suggest)
            times["build"].append(t_build)
            times["profile"].append(t_profile)
            for key, value in measured.items():
                metrics.setdefault(key, []).append(value)
        size = entry["size"]() if callable(entry["size"]) else entry["size"]
        rows.append(
            {
                "space": name,
                "size": size,
                "resolution": res,
                "samples": samples,
                # The first call may pay one-off set-up; it is reported on its own.
                **{
                    f"{k}_ms_median": 1e3 * statistics.median(v[1:] or v) for k, v in times.items()
                },
                "suggest_ms_first": 1e3 * times["suggest"][0],
                **{f"{k}_range": [min(v), max(v)] for k, v in metrics.items()},
            }
        )
        print(f"{name}: done", flush=True)
    return rows


def profile_match_width(resolution: int) -> dict:
    from search_spaces import attention

    design = attention.DESIGNS["snapformer"]
    start = time.perf_counter()
    match = attention.match_width(design, input_size=(1, 3, resolution, resolution))
    seconds = time.perf_counter() - start
    return {
        "design": "snapformer",
        "resolution": resolution,
        "seconds": seconds,
        "width_coefficient": match.width_coefficient,
        "relative_error": match.relative_error,
    }


def _size(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def markdown(rows: list[dict], match: dict | None, header: dict) -> str:
    lines = [
        f"Measured {header['date']} on {header['machine']}, torch {header['torch']}, one CPU "
        f"thread, batch 1, {header['samples']} random samples per space (median times; "
        '"first" includes one-off set-up such as the filtered space\'s enumeration).',
        "",
        "| space | size | px | suggest ms (first) | build ms | zero-cost ms "
        "| params (M) | GFLOPs | latency ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        params = r.get("params_range", [0, 0])
        flops = r.get("flops_range", [0, 0])
        latency = r.get("latency_ms_range", [0, 0])
        lines.append(
            f"| {r['space']} | {_size(r['size'])} | {r['resolution']} "
            f"| {r['suggest_ms_median']:.2f} ({r['suggest_ms_first']:.0f}) "
            f"| {r['build_ms_median']:.0f} | {r['profile_ms_median']:.0f} "
            f"| {params[0] / 1e6:.2f}-{params[1] / 1e6:.2f} "
            f"| {flops[0] / 1e9:.2f}-{flops[1] / 1e9:.2f} "
            f"| {latency[0]:.1f}-{latency[1]:.1f} |"
        )
    if match is not None:
        lines += [
            "",
            f"Latency-matched width (attention space, SnapFormer design, {match['resolution']} "
            f"px): binary search took {match['seconds']:.1f} s, coefficient "
            f"{match['width_coefficient']:.3f}, latency within "
            f"{100 * match['relative_error']:.1f}% of SwiftFormer-XS.",
        ]
    return "\n".join(lines) + "\n"


def update_readme(path: Path, table: str) -> None:
    section = (
        "## Search spaces: suggest, build and zero-cost profiling (`search_spaces_profile.py`)\n\n"
        "```\npython benchmarks/search_spaces_profile.py            # 5 samples, 224 px\n"
        "python benchmarks/search_spaces_profile.py --quick    # smoke test\n```\n\n"
        f"{START}\n{table}{END}\n"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = f"{head}{START}\n{table}{END}{tail}"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-run-time", type=float, default=0.2)
    parser.add_argument("--quick", action="store_true", help="2 samples at 64 px")
    parser.add_argument("--match-width", action="store_true", help="time one width search")
    parser.add_argument("--readme", action="store_true", help="update benchmarks/README.md")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.resolution, args.min_run_time = 2, 64, 0.05

    rows = profile(args.samples, args.resolution, args.seed, args.min_run_time)
    match = profile_match_width(args.resolution) if args.match_width else None
    header = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "samples": args.samples,
    }
    table = markdown(rows, match, header)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "search_spaces_profile-quick" if args.quick else "search_spaces_profile"
    (args.out / f"{stem}.json").write_text(
        json.dumps({**header, "rows": rows, "match_width": match}, indent=1)
    )
    (args.out / f"{stem}.md").write_text(table)
    if args.readme:
        update_readme(ROOT / "benchmarks" / "README.md", table)
    print(table)


if __name__ == "__main__":
    main()
