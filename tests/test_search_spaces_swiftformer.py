from __future__ import annotations

from collections import Counter

import optuna
import pytest
import torch

from search_spaces import SPACES
from search_spaces import reparameterize
from search_spaces import swiftformer
from search_spaces.attention import DESIGNS
from search_spaces.attention import MetaAttention
from search_spaces.blocks import MobileOneUnit
from search_spaces.blocks import count_params

torch.set_num_threads(1)


def _count(config: swiftformer.SwiftFormerConfig, **kwargs: object) -> int:
    with torch.device("meta"):  # shapes only
        return count_params(swiftformer.build(config, **kwargs))


def _close(value: int, published: float, rel: float = 0.02) -> bool:
    return abs(value - published) / published < rel


def _encoders(model: torch.nn.Module) -> list[list[bool]]:
    return [
        [isinstance(b, swiftformer.SwiftFormerEncoder) for b in stage if not _is_embedding(b)]
        for stage in model.stages
    ]


def _is_embedding(block: torch.nn.Module) -> bool:
    return isinstance(block, torch.nn.Sequential) and isinstance(block[0], torch.nn.Conv2d)


def test_registry() -> None:
    assert SPACES["swiftformer"] is swiftformer
    assert set(swiftformer.REFERENCES) == {"swiftformer_xs", "swiftformer_s", "mobileone_like_xs"}


def test_published_parameter_counts() -> None:
    # Tables 8.2 / 8.3: 3.47M and 6.09M, counted with the distillation head (arch-facts 2.1).
    xs = _count(swiftformer.REFERENCES["swiftformer_xs"])
    s = _count(swiftformer.REFERENCES["swiftformer_s"])
    assert xs == 3_475_360 and _close(xs, 3.47e6)
    assert s == 6_092_128 and _close(s, 6.09e6)
    # Without the distillation head, the counts drop by exactly one dim3 x 1000 linear layer.
    assert _count(swiftformer.REFERENCES["swiftformer_xs"], distillation=False) == 3_254_360
    assert _count(swiftformer.REFERENCES["swiftformer_xs"], num_classes=10) == 3_037_780


def test_snapformer_attention_in_swiftformer() -> None:
    # Table 8.2: "+ low-latency attention mechanism": XS 3.41M, S 6.01M.
    snap = DESIGNS["snapformer"]
    for name, published in (("swiftformer_xs", 3.41e6), ("swiftformer_s", 6.01e6)):
        n = _count(swiftformer.REFERENCES[name], attention=lambda d: MetaAttention(snap, d))
        assert _close(n, published, 0.005)
    assert (
        _count(
            swiftformer.REFERENCES["swiftformer_xs"], attention=lambda d: MetaAttention(snap, d)
        )
        == 3_408_540
    )


def test_reference_structure() -> None:
    xs = swiftformer.build(swiftformer.REFERENCES["swiftformer_xs"])
    # One SwiftFormer encoder, as the last block of every stage.
    assert _encoders(xs) == [[False] * (d - 1) + [True] for d in (3, 3, 6, 4)]
    mo = swiftformer.build(swiftformer.REFERENCES["mobileone_like_xs"])
    assert not any(any(stage) for stage in _encoders(mo))
    units = [m for m in mo.modules() if isinstance(m, MobileOneUnit)]
    assert len(units) == 16 and all(len(u[0].branches) == 4 for u in units)


def test_mobileone_like_member_fuses() -> None:
    model = swiftformer.build(swiftformer.REFERENCES["mobileone_like_xs"], num_classes=10)
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        n_before = count_params(model)
        reparameterize(model)
        after = model(x)
    assert count_params(model) < n_before / 2  # 4 branches collapse into one conv
    assert ((before - after).abs().max() / before.abs().max()) < 1e-5


def test_suggest_covers_the_space() -> None:
    # All distinct: every XS stage has at least 3 blocks, so none/last-1/last-2/all differ.
    assert swiftformer.SPACE_SIZE == 12**4 == 20_736
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    pairs: Counter = Counter()
    for _ in range(300):
        trial = study.ask()
        config = swiftformer.suggest(trial, num_branches=1)
        study.tell(trial, 0.0)
        assert len(trial.params) == 8 and config.num_branches == 1
        pairs.update(zip(config.conv_types, config.attention))
        expected = {"none": 0, "last-1": 1, "last-2": 2}
        for depth, choice, n in zip(config.depths, config.attention, config.attention_blocks):
            assert n == (depth if choice == "all" else expected[choice])
    assert len(pairs) == 12


def _fixed(conv: list[str], attn: list[str]) -> swiftformer.SwiftFormerConfig:
    params = {}
    for i, (c, a) in enumerate(zip(conv, attn), start=1):
        params[f"stage{i}_conv"] = c
        params[f"stage{i}_attention"] = a
    return swiftformer.suggest(optuna.trial.FixedTrial(params))


@pytest.mark.parametrize(
    "config",
    [
        # Together these cover all 12 (conv type, attention) pairs of a stage.
        _fixed(["conv-enc", "mo", "mo-se", "conv-enc"], ["none", "last-1", "last-2", "all"]),
        _fixed(["mo", "mo-se", "conv-enc", "mo"], ["none", "last-1", "last-2", "all"]),
        _fixed(["mo-se", "conv-enc", "mo", "mo-se"], ["none", "last-1", "last-2", "all"]),
    ],
)
def test_every_choice_builds_and_runs(config: swiftformer.SwiftFormerConfig) -> None:
    model = swiftformer.build(config, num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    cls, dist = model.forward_heads(x)
    assert cls.shape == dist.shape == (2, 3)
    assert model(x).shape == (2, 3)
    expected = [
        [j >= depth - n for j in range(depth)]
        for depth, n in zip(config.depths, config.attention_blocks)
    ]
    assert _encoders(model) == expected


def test_random_samples_build_and_run() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    x = torch.randn(2, 3, 32, 32)
    for _ in range(4):
        trial = study.ask()
        config = swiftformer.suggest(trial)
        study.tell(trial, 0.0)
        model = swiftformer.build(config, num_classes=3, distillation=False)
        assert model(x).shape == (2, 3)
        reparameterize(model.eval())
        assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"conv_types": ("mo",) * 3}, "four in all"),
        ({"attention": ("bogus",) * 4}, "'bogus' is not one of"),
        ({"depths": (3, 3, 0, 4)}, "whole number >= 1"),
    ],
)
def test_a_hand_written_config_that_cannot_build_is_refused(kwargs: dict, match: str) -> None:
    options = {"conv_types": ("mo",) * 4, "attention": ("none",) * 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        swiftformer.SwiftFormerConfig(**options)
