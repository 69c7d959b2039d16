"""Efficient self-attention meta-design and SnapFormer (thesis chapter 8, Figure 8.3).

Tokens ``x`` (B, N, D) go through linear projections M1..M4 (D -> D, bias), some of which may be
the same projection. Two branches each produce a 1-D vector (length n or d) or, for branch 2
only, a 2-D n x d map:

- a 1-D branch with a **d** output scores the tokens with a learnable vector ``w``:
  ``a = op_n(Ma @ w / sqrt(d))`` (length n), then pools ``b = sum_n a_n * Mb[n]`` (length d);
- a 1-D branch with an **n** output pools the tokens: ``v = op_d(mean_n Ma[n])`` (length d), then
  scores each token ``b = Mb @ v / sqrt(d)`` (length n). (The thesis sums; we take the mean so
  the scale does not grow with the token count.)
- a 2-D branch is a projection itself.

``op`` is softmax (over the n or d axis it is applied to), GELU or SiLU. The combination is
``proj2(proj1(b1 * b2) + M_comb)`` with broadcasting (an n- times a d-vector is their outer
product), where ``proj1`` and ``proj2`` are each identity or a D -> D linear layer and ``M_comb``
is one of the projections used by the branches.

Encoding (section 8.2.2, same names): ``b1_dim``, ``b1_op``, ``b1_mat2``, ``b2_dim``, then
``b2_mat12`` (only when branch 2 is 2-D) or ``b2_op``, ``b2_mat3``, ``b2_mat4`` (only when it is
1-D), ``comb_type`` and ``comb_mat``. A ``*_mat*`` value ``k <= P`` reuses the k-th distinct
projection made so far and ``P + 1`` makes a new one, so every encoding is a different wiring and
none is infeasible (``suggest_int`` ranges grow with ``P``). This gives **5,568** designs
(:func:`count_designs`, enumerated) against the thesis' 10,560: the thesis' encoding gives every
reuse variable a fixed range, so several of its codes name the same wiring, but its exact ranges
are not given and none of the fixed-range readings we tried lands on 10,560.

The space's networks are SwiftFormer-XS (same depths, one attention block at the end of each
stage, conv-enc blocks) whose widths are scaled by a width coefficient. For each design,
:func:`match_width` finds by binary search the coefficient whose latency on the current device
matches SwiftFormer-XS's within 3%, cached per design and device (in memory, and in a JSON file
when ``cache_path`` is given). ``suggest`` leaves the coefficient to this matching by default,
as in the thesis; ``suggest(trial, search_width=True)`` makes it a variable instead.

Named designs: ``"efficient_additive"`` is SwiftFormer's EAA wiring (Q = M1 = M2 scored by
``w``, K = a new 2-D projection, both combination layers linear, ``M_comb`` = Q). The official
EAA also L2-normalises Q, K and the token scores; the meta-design has no such op, so it is
represented with softmax scores (same parameters and wiring; the exact EAA is
:class:`search_spaces.swiftformer.EfficientAdditiveAttention`). ``"snapformer"`` is section
8.3.1's design: a d-dimensional branch 1 from two projections, an n-dimensional branch 2 from one
new projection and one reused from branch 1, both combination layers identity. The text does not
say which projection is reused, which is ``M_comb`` or which ops are used (Figure 8.4 is not in
our copy); we reuse M1 in branch 2, take ``M_comb`` = M1 as EAA does, and use softmax.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
import json
import os
from pathlib import Path
import platform
import tempfile
from typing import TYPE_CHECKING
import warnings

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import IntDistribution
from optuna.trial import FixedTrial
import torch
from torch import nn
import torch.nn.functional as F

from optuna_deepens import zero_cost
from optuna_deepens.dry_run import DryRunTrial
from search_spaces import swiftformer
from search_spaces.blocks import reparameterize

if TYPE_CHECKING:
    import optuna


OPS = ("softmax", "gelu", "silu")
B1_DIMS = ("n", "d")
B2_DIMS = ("n", "d", "nd")
COMB_TYPES = ("identity-identity", "linear-identity", "identity-linear", "linear-linear")
XS_WIDTHS = (48, 56, 112, 220)
XS_DEPTHS = (3, 3, 6, 4)
WIDTH_BOUNDS = (0.5, 2.0)
SPACE_SIZE = 5_568  # designs, = count_designs() (checked in the tests); widths are matched


@dataclass(frozen=True)
class AttentionDesign:
    """One attention mechanism of the meta-design (encoding of section 8.2.2).

    ``*_mat*`` values number the distinct projections: ``k`` reuses the k-th one made so far,
    one more than the count so far makes a new one. Inactive variables are None.
    """

    b1_dim: str
    b1_op: str
    b1_mat2: int
    b2_dim: str
    b2_mat12: int | None
    b2_op: str | None
    b2_mat3: int | None
    b2_mat4: int | None
    comb_type: str
    comb_mat: int

    def slots(self) -> tuple[int, ...]:
        """Projection index (0-based, distinct) of M1, M2 and of branch 2's one or two slots."""
        refs = [0]
        count = 1
        picks = (self.b1_mat2,)
        picks += (self.b2_mat12,) if self.b2_dim == "nd" else (self.b2_mat3, self.b2_mat4)
        for pick in picks:
            if pick == count + 1:
                refs.append(count)
                count += 1
            else:
                refs.append(pick - 1)
        return tuple(refs)

    @property
    def num_projections(self) -> int:
        return max(self.slots()) + 1


def _op(name: str, x: torch.Tensor, dim: int) -> torch.Tensor:
    if name == "softmax":
        return torch.softmax(x, dim=dim)
    if name == "gelu":
        return F.gelu(x)
    if name == "silu":
        return F.silu(x)
    raise ValueError(f"unknown op {name!r}")


class MetaAttention(nn.Module):
    """An attention mechanism of the meta-design, mixing tokens (B, N, D) -> (B, N, D)."""

    def __init__(self, design: AttentionDesign, dim: int) -> None:
        super().__init__()
        self.design = design
        self.dim = dim
        self.slot = design.slots()
        self.projections = nn.ModuleList(
            nn.Linear(dim, dim) for _ in range(design.num_projections)
        )
        self.w1 = nn.Parameter(torch.randn(dim, 1)) if design.b1_dim == "d" else None
        self.w2 = nn.Parameter(torch.randn(dim, 1)) if design.b2_dim == "d" else None
        proj1, proj2 = design.comb_type.split("-")
        self.proj1 = nn.Linear(dim, dim) if proj1 == "linear" else None
        self.proj2 = nn.Linear(dim, dim) if proj2 == "linear" else None
        self.scale = dim**-0.5

    def _branch(
        self, out_dim: str, op: str, a: torch.Tensor, b: torch.Tensor, w: nn.Parameter | None
    ) -> torch.Tensor:
        if out_dim == "d":  # score tokens, pool them: (B, 1, D)
            scores = _op(op, a @ w * self.scale, dim=1)
            return torch.sum(scores * b, dim=1, keepdim=True)
        pooled = _op(op, a.mean(dim=1, keepdim=True), dim=-1)  # (B, 1, D)
        return b @ pooled.transpose(1, 2) * self.scale  # (B, N, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        design = self.design
        m = [proj(x) for proj in self.projections]
        s = self.slot
        b1 = self._branch(design.b1_dim, design.b1_op, m[s[0]], m[s[1]], self.w1)
        if design.b2_dim == "nd":
            b2 = m[s[2]]
        else:
            b2 = self._branch(design.b2_dim, design.b2_op, m[s[2]], m[s[3]], self.w2)
        out = b1 * b2
        if self.proj1 is not None:
            if out.shape[-1] != self.dim:
                out = out.expand(*out.shape[:-1], self.dim)
            out = self.proj1(out)
        out = out + m[design.comb_mat - 1]
        return self.proj2(out) if self.proj2 is not None else out


def attention_params(design: AttentionDesign, dim: int) -> int:
    """Closed-form parameter count of :class:`MetaAttention`."""
    linear = dim * dim + dim
    total = design.num_projections * linear
    total += dim * ((design.b1_dim == "d") + (design.b2_dim == "d"))
    return total + linear * design.comb_type.count("linear")


@dataclass(frozen=True)
class SnapFormerConfig:
    """A design in a SwiftFormer-style network.

    ``widths=None`` scales SwiftFormer-XS's widths by ``width_coefficient``; a coefficient of
    None is latency-matched to SwiftFormer-XS at build time (:func:`match_width`).
    """

    design: AttentionDesign
    width_coefficient: float | None = None
    depths: tuple[int, int, int, int] = XS_DEPTHS
    attention_blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    widths: tuple[int, int, int, int] | None = None
    latency_ratio: float = 1.0  # The matched latency, as a multiple of SwiftFormer-XS's.


def scaled_widths(coefficient: float) -> tuple[int, ...]:
    """SwiftFormer-XS's widths times ``coefficient``, rounded to multiples of 4 (exact at 1)."""
    return tuple(max(4, 4 * round(coefficient * w / 4)) for w in XS_WIDTHS)


def check_design(design: AttentionDesign) -> None:
    """``design`` is one of the meta-design's: replayed through :func:`suggest_design`, it
    comes back unchanged (each choice known, each projection index in range)."""
    params = {k: v for k, v in asdict(design).items() if v is not None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FixedTrial only warns of an int out of range.
            replay = suggest_design(FixedTrial(params))
    except (ValueError, UserWarning) as error:
        raise ValueError(f"{design} is not a design of the space: {error}") from None
    if replay != design:
        raise ValueError(f"{design} is not a design of the space: it reads as {replay}.")


def _network(
    design: AttentionDesign,
    widths: tuple[int, ...],
    depths: tuple[int, ...],
    attention_blocks: tuple[int, ...],
    *,
    num_classes: int,
    distillation: bool,
) -> swiftformer.SwiftFormer:
    return swiftformer.SwiftFormer(
        depths,
        widths,
        ("conv-enc",) * 4,
        attention_blocks,
        num_classes=num_classes,
        distillation=distillation,
        attention=lambda dim: MetaAttention(design, dim),
    )


def build(
    config: SnapFormerConfig,
    *,
    num_classes: int = 1000,
    distillation: bool = True,
    device: str | torch.device = "cpu",
    cache_path: str | os.PathLike | None = None,
) -> swiftformer.SwiftFormer:
    """Build the network; a latency-matched width is looked up or searched on ``device``."""
    check_design(config.design)
    widths = config.widths
    if widths is None:
        coefficient = config.width_coefficient
        if coefficient is None:
            coefficient = match_width(
                config.design,
                device=device,
                cache_path=cache_path,
                latency_ratio=config.latency_ratio,
            ).width_coefficient
        widths = scaled_widths(coefficient)
    return _network(
        config.design,
        widths,
        config.depths,
        config.attention_blocks,
        num_classes=num_classes,
        distillation=distillation,
    )


# --- Latency-matched width ------------------------------------------------------------------


@dataclass(frozen=True)
class WidthMatch:
    """The outcome of :func:`match_width` (latencies in seconds)."""

    width_coefficient: float
    widths: tuple[int, ...]
    latency: float
    reference_latency: float
    latency_ratio: float = 1.0  # The target: this times the reference's latency.

    @property
    def relative_error(self) -> float:
        return abs(self.latency / (self.latency_ratio * self.reference_latency) - 1.0)


LatencyFn = Callable[[nn.Module, tuple[int, ...], torch.device], float]

_MEMORY_CACHE: dict[str, WidthMatch] = {}


def measure_latency(
    model: nn.Module, input_size: tuple[int, ...], device: torch.device, min_run_time: float = 0.2
) -> float:
    """Median forward latency in **seconds** (eval mode, fused, no grad), after one warm-up.

    Timed by :func:`optuna_deepens.zero_cost.measure_latency_ms`. On CPU it uses the current
    ``torch.get_num_threads()`` (part of :func:`device_key`), not one thread as zero-cost
    metrics do, so that cached widths keep meaning what their key says.
    """
    model = reparameterize(model.eval()).to(device)
    x = torch.randn(*input_size, device=device)
    milliseconds = zero_cost.measure_latency_ms(
        model, x, warmup=1, min_run_time=min_run_time, n_threads=torch.get_num_threads()
    )
    return milliseconds / 1e3


def device_key(device: str | torch.device) -> str:
    """Names the hardware a latency was measured on (and the thread count on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    return f"{device.type}:{cpu}:threads={torch.get_num_threads()}"


def _load_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _store_cache(path: Path, key: str, match: WidthMatch) -> None:
    data = _load_cache(path)
    data[key] = asdict(match)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(f.name, path)


def match_width(
    design: AttentionDesign,
    *,
    device: str | torch.device = "cpu",
    input_size: tuple[int, ...] = (1, 3, 224, 224),
    tolerance: float = 0.03,
    bounds: tuple[float, float] = WIDTH_BOUNDS,
    max_steps: int = 14,
    cache_path: str | os.PathLike | None = None,
    latency_fn: LatencyFn | None = None,
    latency_ratio: float = 1.0,
) -> WidthMatch:
    """Binary search of the width coefficient matching SwiftFormer-XS's latency on ``device``.

    Latency grows with width, so the search halves ``bounds`` until a coefficient's latency is
    within ``tolerance`` of the target (or returns the closest one seen after ``max_steps``).
    The target is ``latency_ratio`` times SwiftFormer-XS's latency: chapter 8 matches 1.0; a
    few ratios give the epsilon-constraint search at several budgets (``suggest(trial,
    latency_ratios=...)``).
    Results are cached per design, device and input size, in memory and, with ``cache_path``,
    in a JSON file shared between processes. ``latency_fn`` replaces the timer (for tests).
    """
    if not latency_ratio > 0:
        raise ValueError(f"match_width(latency_ratio={latency_ratio}): must be positive.")
    device = torch.device(device)
    key = _cache_key(design, device, input_size, tolerance, latency_fn, latency_ratio)
    path = Path(cache_path) if cache_path is not None else None
    match = _cached(key, path)
    if match is None:
        match = _search_width(
            design,
            device=device,
            input_size=input_size,
            tolerance=tolerance,
            bounds=bounds,
            max_steps=max_steps,
            measure=latency_fn or measure_latency,
            latency_ratio=latency_ratio,
        )
        if path is not None:
            _store_cache(path, key, match)
    _MEMORY_CACHE[key] = match
    return match


def _cache_key(
    design: AttentionDesign,
    device: torch.device,
    input_size: tuple[int, ...],
    tolerance: float,
    latency_fn: LatencyFn | None,
    latency_ratio: float = 1.0,
) -> str:
    """What a matched width depends on, as the JSON text that keys both caches.

    The ratio is part of the key only when it is not 1, so that earlier caches stay valid.
    """
    ratio = {} if latency_ratio == 1.0 else {"latency_ratio": latency_ratio}
    return json.dumps(
        {
            **ratio,
            "design": asdict(design),
            "device": device_key(device),
            "input_size": list(input_size),
            "tolerance": tolerance,
            "latency_fn": None
            if latency_fn is None
            else getattr(latency_fn, "__qualname__", type(latency_fn).__qualname__),
        },
        sort_keys=True,
    )


def _cached(key: str, path: Path | None) -> WidthMatch | None:
    """The match stored under ``key`` in memory or else in the JSON file, if any."""
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    if path is None or key not in (stored := _load_cache(path)):
        return None
    entry = stored[key]
    return WidthMatch(
        entry["width_coefficient"],
        tuple(entry["widths"]),
        entry["latency"],
        entry["reference_latency"],
        entry.get("latency_ratio", 1.0),
    )


def _search_width(
    design: AttentionDesign,
    *,
    device: torch.device,
    input_size: tuple[int, ...],
    tolerance: float,
    bounds: tuple[float, float],
    max_steps: int,
    measure: LatencyFn,
    latency_ratio: float = 1.0,
) -> WidthMatch:
    """The binary search of :func:`match_width`, timing each width once."""
    reference_model = swiftformer.build(swiftformer.REFERENCES["swiftformer_xs"])
    timed: dict[tuple[int, ...], WidthMatch] = {}

    def timed_at(coefficient: float) -> WidthMatch:
        # The reference is timed right after each candidate: on a shared machine the load
        # drifts, and the ratio of back-to-back timings is far steadier than either alone.
        widths = scaled_widths(coefficient)
        if widths not in timed:
            model = _network(
                design, widths, XS_DEPTHS, (1, 1, 1, 1), num_classes=1000, distillation=True
            )
            latency = measure(model, input_size, device)
            reference = measure(reference_model, input_size, device)
            timed[widths] = WidthMatch(
                round(coefficient, 6), widths, latency, reference, latency_ratio
            )
        return timed[widths]

    low, high = bounds
    best: WidthMatch | None = None
    for _ in range(max_steps):
        candidate = timed_at((low + high) / 2)
        if best is None or candidate.relative_error < best.relative_error:
            best = candidate
        if candidate.relative_error <= tolerance:
            break
        if candidate.latency < latency_ratio * candidate.reference_latency:
            low = (low + high) / 2
        else:
            high = (low + high) / 2
    assert best is not None
    return best


# --- Search space ---------------------------------------------------------------------------


def suggest_design(trial: optuna.Trial) -> AttentionDesign:
    """The 10 variables of section 8.2.2; branch 2's variables are conditional on its shape."""
    b1_dim = trial.suggest_categorical("b1_dim", list(B1_DIMS))
    b1_op = trial.suggest_categorical("b1_op", list(OPS))
    b1_mat2 = trial.suggest_int("b1_mat2", 1, 2)  # 1: M2 is M1, 2: a new projection
    count = b1_mat2
    b2_dim = trial.suggest_categorical("b2_dim", list(B2_DIMS))
    b2_mat12 = b2_op = b2_mat3 = b2_mat4 = None
    if b2_dim == "nd":
        b2_mat12 = trial.suggest_int("b2_mat12", 1, count + 1)
        count = max(count, b2_mat12)
    else:
        b2_op = trial.suggest_categorical("b2_op", list(OPS))
        b2_mat3 = trial.suggest_int("b2_mat3", 1, count + 1)
        count = max(count, b2_mat3)
        b2_mat4 = trial.suggest_int("b2_mat4", 1, count + 1)
        count = max(count, b2_mat4)
    comb_type = trial.suggest_categorical("comb_type", list(COMB_TYPES))
    comb_mat = trial.suggest_int("comb_mat", 1, count)
    return AttentionDesign(
        b1_dim, b1_op, b1_mat2, b2_dim, b2_mat12, b2_op, b2_mat3, b2_mat4, comb_type, comb_mat
    )


def suggest(
    trial: optuna.Trial,
    *,
    search_width: bool = False,
    latency_ratios: Sequence[float] | None = None,
) -> SnapFormerConfig:
    """A design in SwiftFormer-XS; its width is latency-matched at build unless searched.

    With ``latency_ratios`` (e.g. ``(0.5, 0.75, 1.0)``), the matched latency is a parameter
    too, as a multiple of SwiftFormer-XS's: one study then searches the designs at several
    budgets (chapter 8's epsilon-constraint, generalised), for a two-objective study of
    accuracy against ``zc_latency_ms`` or for the best design per budget.
    """
    design = suggest_design(trial)
    coefficient = None
    if search_width:
        coefficient = trial.suggest_float("width_coefficient", *WIDTH_BOUNDS, step=0.05)
    ratio = 1.0
    if latency_ratios is not None:
        if search_width:
            raise ValueError("suggest(search_width=True, latency_ratios=...): choose one.")
        ratio = float(trial.suggest_categorical("latency_ratio", list(latency_ratios)))
    return SnapFormerConfig(design, coefficient, latency_ratio=ratio)


class _PathAnswers:
    """Answers categorical / integer suggestions from a path of choice indices (0 past its end).

    Records how many choices each call offered, so that :func:`_enumerate` can walk the whole
    tree of a ``suggest`` function, conditionals included.
    """

    def __init__(self, path: tuple[int, ...]) -> None:
        self.path = path
        self.fanout: list[int] = []

    def __call__(self, name: str, distribution: BaseDistribution) -> object:
        if isinstance(distribution, CategoricalDistribution):
            choices: Sequence[object] = distribution.choices
        elif isinstance(distribution, IntDistribution):
            choices = range(distribution.low, distribution.high + 1, distribution.step)
        else:
            raise TypeError(f"{name!r}: only categorical and integer suggestions are enumerable.")
        i = len(self.fanout)
        self.fanout.append(len(choices))
        return choices[self.path[i] if i < len(self.path) else 0]


def _enumerate(suggest_fn: Callable[[DryRunTrial], object]) -> Iterator[object]:
    """Every result of ``suggest_fn`` over all answers to its (finite) suggestions."""
    unused = np.random.default_rng(0)  # The answers choose every value: nothing is drawn.
    stack: list[tuple[int, ...]] = [()]
    while stack:
        path = stack.pop()
        answers = _PathAnswers(path)
        yield suggest_fn(DryRunTrial({}, unused, answer=answers))
        full = path + (0,) * (len(answers.fanout) - len(path))
        for j in range(len(path), len(full)):
            stack.extend(full[:j] + (c,) for c in range(1, answers.fanout[j]))


def iter_designs() -> Iterator[AttentionDesign]:
    """Every design of the encoding, by walking all answers of :func:`suggest_design`."""
    return _enumerate(suggest_design)  # type: ignore[return-value]


def count_designs() -> int:
    """Size of the design space (5,568; the thesis counts 10,560, see the module docstring)."""
    return sum(1 for _ in iter_designs())


DESIGNS: dict[str, AttentionDesign] = {
    "efficient_additive": AttentionDesign(
        "d", "softmax", 1, "nd", 2, None, None, None, "linear-linear", 1
    ),
    "snapformer": AttentionDesign(
        "d", "softmax", 2, "n", None, "softmax", 3, 1, "identity-identity", 1
    ),
}

_SNAP = DESIGNS["snapformer"]
_SNAP_BLOCKS = (0, 2, 2, 2)  # Table 8.1: no ViT block in stage 1, two at the end of the others

REFERENCES: dict[str, SnapFormerConfig] = {
    # SwiftFormer-XS (EAA wiring, softmax scores) and with the SnapFormer attention (Table 8.2).
    "efficient_additive_xs": SnapFormerConfig(DESIGNS["efficient_additive"], 1.0),
    "snapformer_attention_xs": SnapFormerConfig(_SNAP, 1.0),
    # Table 8.1.
    "snapformer_xxs": SnapFormerConfig(_SNAP, None, (3, 3, 5, 4), _SNAP_BLOCKS, (48, 56, 96, 192)),
    "snapformer_xs": SnapFormerConfig(_SNAP, None, (3, 3, 6, 4), _SNAP_BLOCKS, (48, 64, 138, 232)),
    "snapformer_s": SnapFormerConfig(_SNAP, None, (3, 3, 9, 6), _SNAP_BLOCKS, (48, 64, 182, 256)),
}
