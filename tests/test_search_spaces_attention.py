from __future__ import annotations

from collections import Counter
import dataclasses
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from optuna_deepens import zero_cost
from optuna_deepens.dry_run import DryRunTrial
from search_spaces import SPACES
from search_spaces import attention
from search_spaces import swiftformer
from search_spaces.attention import DESIGNS
from search_spaces.attention import MetaAttention
from search_spaces.blocks import count_params

torch.set_num_threads(1)


def _count(config: attention.SnapFormerConfig) -> int:
    with torch.device("meta"):  # shapes only
        return count_params(attention.build(config))


def _trials(n: int, seed: int, **kwargs: object) -> list[tuple[dict, attention.SnapFormerConfig]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((trial, attention.suggest(trial, **kwargs)))
        study.tell(trial, 0.0)
    return [(t.params, c) for t, c in out]


def test_registry_and_references() -> None:
    assert SPACES["attention"] is attention
    assert {"snapformer_xxs", "snapformer_xs", "snapformer_s"} <= set(attention.REFERENCES)
    designs = set(attention.iter_designs())
    assert DESIGNS["efficient_additive"] in designs and DESIGNS["snapformer"] in designs


@pytest.mark.parametrize(
    "name, published",
    [("snapformer_xxs", 2.84e6), ("snapformer_xs", 4.48e6), ("snapformer_s", 7.86e6)],
)
def test_snapformer_parameter_counts(name: str, published: float) -> None:
    # Table 8.3 (within 3%; our builds round to the published value).
    n = _count(attention.REFERENCES[name])
    assert abs(n - published) / published < 0.03
    assert round(n / 1e6, 2) == published / 1e6


def test_attention_swaps_in_swiftformer_xs() -> None:
    # The EAA wiring has EAA's parameters: the XS network counts exactly SwiftFormer-XS's.
    assert _count(attention.REFERENCES["efficient_additive_xs"]) == 3_475_360
    eaa = MetaAttention(DESIGNS["efficient_additive"], 56)
    official = swiftformer.EfficientAdditiveAttention(56)
    shapes = Counter(tuple(p.shape) for p in eaa.parameters())
    assert shapes == Counter(tuple(p.shape) for p in official.parameters())
    # Table 8.2: SwiftFormer-XS with the low-latency attention has 3.41M parameters.
    n = _count(attention.REFERENCES["snapformer_attention_xs"])
    assert n == 3_408_540 and round(n / 1e6, 2) == 3.41


def test_snapformer_design_shape() -> None:
    # Section 8.3.1: d-dim branch 1 from two projections, n-dim branch 2 from one new projection
    # and one reused from branch 1, identity proj1 and proj2: 3 projections, one w vector.
    snap = MetaAttention(DESIGNS["snapformer"], 32)
    assert len(snap.projections) == 3 and snap.w1 is not None and snap.w2 is None
    assert snap.proj1 is None and snap.proj2 is None
    assert count_params(snap) == 3 * (32 * 32 + 32) + 32


def test_design_count_and_every_design_runs() -> None:
    designs = list(attention.iter_designs())
    assert len(designs) == len(set(designs)) == attention.count_designs() == 5_568
    assert attention.SPACE_SIZE == 5_568
    x = torch.randn(2, 5, 8)
    for design in designs:
        module = MetaAttention(design, 8)
        assert module(x).shape == (2, 5, 8)
        assert count_params(module) == attention.attention_params(design, 8)


def test_suggest_conditionals_are_real() -> None:
    seen = Counter()
    designs = set(attention.iter_designs())
    for params, config in _trials(400, seed=0):
        design = config.design
        assert design in designs
        assert config.width_coefficient is None  # latency-matched at build by default
        two_d = design.b2_dim == "nd"
        assert ("b2_mat12" in params) == two_d
        assert ("b2_op" in params) == ("b2_mat3" in params) == ("b2_mat4" in params) == (not two_d)
        assert (design.b2_op is None) == two_d
        # Reuse variables never point past the projections made so far.
        assert params["comb_mat"] <= design.num_projections
        seen[design.b2_dim] += 1
    assert set(seen) == {"n", "d", "nd"}
    params, config = _trials(1, seed=3, search_width=True)[0]
    assert config.width_coefficient == params["width_coefficient"]


def test_every_sample_builds_and_runs() -> None:
    samples = [c for _, c in _trials(6, seed=1, search_width=True)]
    samples += [attention.SnapFormerConfig(d, 0.5) for d in DESIGNS.values()]
    x = torch.randn(2, 3, 32, 32)
    b2_dims = set()
    for config in samples:
        model = attention.build(config, num_classes=4)
        assert model(x).shape == (2, 4)
        b2_dims.add(config.design.b2_dim)
    assert b2_dims == {"n", "d", "nd"}


class _FakeLatency:
    """A deterministic stand-in for the timer: latency grows with the parameter count."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: torch.nn.Module, input_size: tuple, device: torch.device) -> float:
        self.calls += 1
        return count_params(model) * 1e-9


def test_match_width_binary_search_and_caches(tmp_path: Path) -> None:
    cache = tmp_path / "widths.json"
    snap = DESIGNS["snapformer"]
    fake = _FakeLatency()
    match = attention.match_width(snap, cache_path=cache, latency_fn=fake)
    assert match.relative_error <= 0.03
    # SnapFormer's attention is cheaper than EAA, so it gets a wider network (thesis: 1.1).
    assert match.width_coefficient > 1.0
    assert match.widths == attention.scaled_widths(match.width_coefficient)
    calls = fake.calls
    assert attention.match_width(snap, cache_path=cache, latency_fn=fake) == match
    assert fake.calls == calls  # memory cache
    attention._MEMORY_CACHE.clear()
    assert attention.match_width(snap, cache_path=cache, latency_fn=fake) == match
    assert fake.calls == calls  # JSON cache
    stored = json.loads(cache.read_text())
    (key,) = stored
    assert json.loads(key)["device"] == attention.device_key("cpu")
    assert stored[key]["width_coefficient"] == match.width_coefficient
    # Another design is another entry.
    attention.match_width(DESIGNS["efficient_additive"], cache_path=cache, latency_fn=fake)
    assert len(json.loads(cache.read_text())) == 2


def test_timer_latency_is_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    # The timing is zero_cost's (milliseconds); cached widths and their keys stay in seconds.
    seen = {}

    def fake_ms(model: torch.nn.Module, x: torch.Tensor, **options: object) -> float:
        seen.update(options, shape=tuple(x.shape), training=model.training)
        return 5.0

    monkeypatch.setattr(zero_cost, "measure_latency_ms", fake_ms)
    model = swiftformer.build(swiftformer.REFERENCES["swiftformer_xs"])
    assert attention.measure_latency(model, (1, 3, 64, 64), torch.device("cpu")) == 0.005
    assert seen["shape"] == (1, 3, 64, 64) and seen["training"] is False
    assert seen["n_threads"] == torch.get_num_threads()  # As device_key records.


def test_dry_run_trial_answers_walk_the_whole_tree() -> None:
    def space(trial: DryRunTrial) -> tuple:
        kind = trial.suggest_categorical("kind", ["a", "b"])
        if kind == "a":
            return (kind, trial.suggest_int("n", 1, 5, step=2))
        return (kind,)

    assert sorted(attention._enumerate(space)) == [("a", 1), ("a", 3), ("a", 5), ("b",)]


def test_match_width_with_the_timer() -> None:
    # The real timer runs end to end here; how close it gets (the 3% target) is a timing and is
    # measured by benchmarks/search_spaces_profile.py --match-width, not held to it in a test (a
    # loaded CI machine measured 16% once). The search logic is checked exactly with a fake
    # timer above.
    match = attention.match_width(DESIGNS["snapformer"], input_size=(1, 3, 64, 64))
    assert match.latency > 0 and match.reference_latency > 0
    # A search gone the wrong way ends at a bound, 2x or more off; 16% is the worst seen.
    assert match.relative_error < 0.5
    assert 0.5 <= match.width_coefficient <= 2.0
    assert match.widths == attention.scaled_widths(match.width_coefficient)


def test_build_uses_the_matched_width(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_match(design: attention.AttentionDesign, **kwargs: object) -> attention.WidthMatch:
        calls.append(design)
        return attention.WidthMatch(1.25, attention.scaled_widths(1.25), 1.0, 1.0)

    monkeypatch.setattr(attention, "match_width", fake_match)
    config = attention.SnapFormerConfig(DESIGNS["snapformer"])
    model = attention.build(config, num_classes=10)
    assert calls == [DESIGNS["snapformer"]]
    assert model.head.in_features == attention.scaled_widths(1.25)[-1] == 276


def test_match_width_at_a_latency_budget_below_the_reference(tmp_path: Path) -> None:
    cache = tmp_path / "widths.json"
    snap = DESIGNS["snapformer"]
    fake = _FakeLatency()
    attention._MEMORY_CACHE.clear()
    matched = attention.match_width(snap, cache_path=cache, latency_fn=fake)
    faster = attention.match_width(snap, cache_path=cache, latency_fn=fake, latency_ratio=0.6)
    assert faster.latency_ratio == 0.6 and faster.relative_error <= 0.03
    assert faster.latency == pytest.approx(0.6 * faster.reference_latency, rel=0.03)
    assert faster.width_coefficient < matched.width_coefficient
    keys = [json.loads(key) for key in json.loads(cache.read_text())]
    # Ratio 1 keeps the key of earlier caches; another ratio is another entry.
    assert sorted(k.get("latency_ratio", 1.0) for k in keys) == [0.6, 1.0]
    attention._MEMORY_CACHE.clear()
    again = attention.match_width(snap, cache_path=cache, latency_fn=fake, latency_ratio=0.6)
    assert again == faster
    with pytest.raises(ValueError, match="latency_ratio"):
        attention.match_width(snap, latency_fn=fake, latency_ratio=0.0)


def test_latency_budgets_as_a_parameter_reach_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def fake_match(design: attention.AttentionDesign, **kwargs: object) -> attention.WidthMatch:
        seen.append(kwargs["latency_ratio"])
        return attention.WidthMatch(0.75, attention.scaled_widths(0.75), 0.5, 1.0, 0.5)

    monkeypatch.setattr(attention, "match_width", fake_match)
    ratios = (0.5, 0.75, 1.0)
    trial = DryRunTrial({"latency_ratio": 0.5}, np.random.default_rng(0))
    config = attention.suggest(trial, latency_ratios=ratios)
    assert config.latency_ratio == 0.5
    assert trial.distributions["latency_ratio"].choices == ratios
    attention.build(config, num_classes=10)
    assert seen == [0.5]
    assert attention.suggest(DryRunTrial({}, np.random.default_rng(0))).latency_ratio == 1.0
    with pytest.raises(ValueError, match="choose one"):
        attention.suggest(trial, search_width=True, latency_ratios=ratios)


@pytest.mark.parametrize(
    "change, match",
    [({"b1_op": "bogus"}, "'bogus' not in"), ({"comb_mat": 7}, "out of the range")],
)
def test_a_design_outside_the_meta_design_is_refused_before_building(
    change: dict, match: str
) -> None:
    design = dataclasses.replace(attention.DESIGNS["snapformer"], **change)
    with pytest.raises(ValueError, match=match):
        attention.build(attention.SnapFormerConfig(design, width_coefficient=0.5), num_classes=10)
