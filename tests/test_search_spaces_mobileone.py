from __future__ import annotations

import optuna
import pytest
import torch

from search_spaces import SPACES
from search_spaces import mobileone
from search_spaces import reparameterize
from search_spaces.blocks import MobileOneBlock
from search_spaces.blocks import count_params

torch.set_num_threads(1)

# Published counts (arch-facts section 1.6: timm results table for train-time, mmpretrain for
# fused; ImageNet-1k head).
PUBLISHED_1K = {
    "mobileone_s0": (5.29e6, 2.08e6),
    "mobileone_s1": (4.83e6, 4.76e6),
    "mobileone_s2": (7.88e6, 7.81e6),
    "mobileone_s3": (10.17e6, 10.08e6),
    "mobileone_s4": (14.95e6, 14.84e6),
}


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so that fusion is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.5, 0.5, generator=g)


def _assert_fusion_exact(model: torch.nn.Module, x: torch.Tensor, tol: float = 1e-5) -> None:
    _randomize_bn(model)
    model.eval()
    with torch.no_grad():
        before = model(x)
        reparameterize(model)
        after = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    rel = (before - after).abs().max() / before.abs().max()
    assert rel < tol


def _samples(n: int, seed: int, **kwargs: object) -> list[mobileone.MobileOneConfig]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(mobileone.suggest(trial, **kwargs))
        study.tell(trial, 0.0)
    return configs


def test_registry_and_reference_names() -> None:
    assert SPACES["mobileone"] is mobileone
    assert set(mobileone.REFERENCES) == {f"mobileone_s{i}" for i in range(5)}


def test_s0_thesis_counts_with_10_class_head() -> None:
    # Thesis Table 7.3: 4.28M train-time, 1.06M test-time (exact: arch-facts 1.6).
    model = mobileone.build(mobileone.REFERENCES["mobileone_s0"], num_classes=10)
    assert count_params(model) == 4_278_522
    assert round(count_params(model) / 1e6, 2) == 4.28
    model.eval()
    reparameterize(model)
    assert count_params(model) == 1_063_754
    assert round(count_params(model) / 1e6, 2) == 1.06


@pytest.mark.parametrize("name", sorted(PUBLISHED_1K))
def test_imagenet_counts_within_2_percent(name: str) -> None:
    config = mobileone.REFERENCES[name]
    train, fused = PUBLISHED_1K[name]
    model = mobileone.build(config)
    n_train = count_params(model)
    assert n_train == mobileone.count_params(config)
    assert abs(n_train - train) / train < 0.02
    model.eval()
    reparameterize(model)
    n_fused = count_params(model)
    assert n_fused == mobileone.count_params(config, fused=True)
    assert abs(n_fused - fused) / fused < 0.02


def test_reference_structure() -> None:
    s0 = mobileone.build(mobileone.REFERENCES["mobileone_s0"], num_classes=10)
    assert len(s0.stem.branches) == 1  # the stem never gets the k branches
    blocks = [m for m in s0.modules() if isinstance(m, MobileOneBlock)]
    assert len(blocks) == 1 + 2 * 21
    assert all(len(b.branches) == 4 for b in blocks[1:])
    s4 = mobileone.build(mobileone.REFERENCES["mobileone_s4"], num_classes=10)
    with_se = [
        [not isinstance(unit[0].se, torch.nn.Identity) for unit in stage] for stage in s4.stages
    ]
    assert with_se == [[False] * 2, [False] * 8, [False] * 5 + [True] * 5, [True]]


@pytest.mark.parametrize("name", ["mobileone_s0", "mobileone_s4"])  # 4 branches; SE
def test_fused_matches_unfused_in_float32(name: str) -> None:
    model = mobileone.build(mobileone.REFERENCES[name], num_classes=10)
    _assert_fusion_exact(model, torch.randn(2, 3, 64, 64))


def test_closed_form_count_matches_built_models() -> None:
    for config in _samples(30, seed=3):
        with torch.device("meta"):  # shapes only: fast even for the widest members
            model = mobileone.build(config, num_classes=7)
        assert count_params(model) == mobileone.count_params(config, num_classes=7)


def test_every_sample_builds_runs_and_fuses() -> None:
    configs = _samples(8, seed=0)
    # Depth-0 stages, including an empty network (stem + head) and SE with 4 branches.
    sparse = {"depth1": 0, "width1": 0.25, "depth2": 1, "width2": 0.5, "depth3": 0, "depth4": 2}
    empty = {"depth1": 0, "width1": 1.0, "depth2": 0, "depth3": 0, "depth4": 0}
    configs += [
        mobileone.suggest(optuna.trial.FixedTrial(params))
        for params in (
            {"use_se": True, "num_branches": 4, "width4": 0.5, **sparse},
            {"use_se": False, "num_branches": 1, **empty},
        )
    ]
    assert any(0 in c.depths for c in configs)
    x = torch.randn(2, 3, 16, 16)  # 1x1 after stage 3; stride-2 blocks still work
    for config in configs:
        model = mobileone.build(config, num_classes=3)
        assert model(x).shape == (2, 3)  # train mode
        if mobileone.count_params(config) < 10_000_000:
            # Float64: random deep members can amplify float32 rounding (seen: 6e-4 with SE),
            # while the fusion algebra itself must be exact.
            _assert_fusion_exact(model.double(), x.double(), tol=1e-10)
        else:  # keep the test fast: fuse, but skip the float64 comparison
            reparameterize(model.eval())
            assert torch.isfinite(model(x)).all()
        assert count_params(model) == mobileone.count_params(config, num_classes=3, fused=True)


def test_suggest_is_non_decreasing_and_conditional() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_absent = False
    for _ in range(200):
        trial = study.ask()
        config = mobileone.suggest(trial)
        study.tell(trial, 0.0)
        mults = config.width_multipliers
        assert all(a <= b for a, b in zip(mults, mults[1:]))
        assert all(0.25 <= a <= 4.0 and (a * 4).is_integer() for a in mults)
        assert set(config.depths) <= set(mobileone.DEPTHS)
        # A stage that does not exist asks no multiplier (stage 1 always does: the stem).
        for i, depth in enumerate(config.depths[1:], start=2):
            assert (f"width{i}" in trial.params) == (depth > 0)
            seen_absent |= depth == 0
        assert "width1" in trial.params
    assert seen_absent


def test_filtered_suggest_stays_in_the_filter() -> None:
    for config in _samples(150, seed=2, filtered=True):
        assert 19 <= config.total_depth <= 22
        params = mobileone.count_params(config, num_classes=10, fused=True)
        assert 860_000 <= params <= 1_260_000


def test_filtered_space_size_is_documented() -> None:
    # The thesis counts 55,870; see the module docstring for why ours differs.
    configs = list(mobileone.filtered_configs())
    assert len(configs) == mobileone.filtered_space_size() == 36_306
    assert mobileone.REFERENCES["mobileone_s0"] in set(configs)
    assert mobileone.space_size() == mobileone.SPACE_SIZE == 13_146_144
    assert mobileone.space_size(distinct=False) == 6**4 * 3876 * 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depths": (2, 8, 10)}, "four in all"),
        ({"depths": (2, 8, 10, -1)}, "whole number >= 0"),
        ({"width_multipliers": (1.0, 1.0, 0.0, 1.0)}, "positive number"),
        ({"num_branches": 0}, "num_branches=0"),
    ],
)
def test_a_hand_written_config_that_cannot_build_is_refused(kwargs: dict, match: str) -> None:
    options = {"depths": (2, 8, 10, 1), "width_multipliers": (1.0, 1.0, 1.0, 1.0), **kwargs}
    with pytest.raises(ValueError, match=match):
        mobileone.MobileOneConfig(**options)
