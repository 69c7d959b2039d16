"""The MOAT / MobileNetV2 / ViT hybrid space (thesis 7.2): cells, published counts, samples."""

from __future__ import annotations

import dataclasses
import itertools

import optuna
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from search_spaces import moat

# Published parameter counts, 1000 classes, with / without the relative position bias
# (deeplab2's MOAT checkpoint table, in millions).
PUBLISHED_PARAMS_M = {
    "tiny_moat_0": (3.4, 3.3),
    "tiny_moat_1": (5.1, 5.1),
    "tiny_moat_2": (9.8, 9.7),
    "moat_0": (27.8, 27.8),
}
# Exact counts of a rebuild from the official code's description (arch-facts section 4.5).
TINY_MOAT_0_PARAMS = 3_355_348
TINY_MOAT_0_PARAMS_NO_PE = 3_332_232
TINY_MOAT_0_PARAMS_10_CLASSES = 3_100_918


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _without_bias(config: moat.MOATConfig) -> moat.MOATConfig:
    return dataclasses.replace(config, relative_position_bias=False)


def test_cells_are_the_thesis_seven_plus_two_parallel() -> None:
    assert len(moat.FEASIBLE_CELLS) == 7
    assert len(moat.PARALLEL_CELLS) == 2
    assert moat.SPACE_SIZE == 9**4 == 6_561
    pairs = {(a, b) for a, b, parallel in moat.CELLS.values() if not parallel}
    # Every cell the thesis names: MBConv no SE (MobileNetV2), MBConv with SE (tiny-MOAT's
    # stages 1-2), the MOAT block, MOAT block & SE, MBConv & SE + MLP, and the ViT block.
    assert {
        ("mbconv", "zero"),
        ("mbconv_se", "zero"),
        ("mbconv", "attention"),
        ("mbconv_se", "attention"),
        ("mbconv_se", "mlp"),
        ("attention", "mlp"),
    } < pairs
    for a, b, parallel in moat.CELLS.values():
        assert a in moat.MINI_BLOCKS and b in moat.MINI_BLOCKS
        # (a) opens the stage, so it must be able to downsample and widen.
        assert a in ("mbconv", "mbconv_se", "attention")
        # Attention is always followed (or accompanied) by a channel mixer.
        assert "attention" not in (a, b) or {a, b} & {"mbconv", "mbconv_se", "mlp"}
        if parallel:
            assert "zero" not in (a, b)


def test_tiny_moat_0_matches_the_published_model() -> None:
    tiny = moat.REFERENCES["tiny_moat_0"]
    assert tiny.cells == ("mbconv_se", "mbconv_se", "mbconv+attention", "mbconv+attention")
    assert (tiny.depths, tiny.widths, tiny.stem_width) == ((2, 3, 7, 2), (32, 64, 128, 256), 32)
    assert _params(moat.build(tiny)) == TINY_MOAT_0_PARAMS
    assert _params(moat.build(_without_bias(tiny))) == TINY_MOAT_0_PARAMS_NO_PE
    assert _params(moat.build(tiny, num_classes=10)) == TINY_MOAT_0_PARAMS_10_CLASSES
    # The relative position tables: heads * (2P - 1)**2 per attention block, P = 14 in stage 3
    # (4 heads, 7 blocks) and P = 7 in stage 4 (8 heads, 2 blocks).
    assert TINY_MOAT_0_PARAMS - TINY_MOAT_0_PARAMS_NO_PE == 7 * 4 * 27**2 + 2 * 8 * 13**2


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_published_parameter_counts_within_2_percent(name: str) -> None:
    config = moat.REFERENCES[name]
    with_bias, without_bias = PUBLISHED_PARAMS_M[name]
    assert _params(moat.build(config)) / 1e6 == pytest.approx(with_bias, rel=0.02)
    assert _params(moat.build(_without_bias(config))) / 1e6 == pytest.approx(
        without_bias, rel=0.02
    )


def test_tiny_moat_0_multiply_adds() -> None:
    """deeplab2 quotes 1.1B "FLOPs" (multiply-adds, with BN and activations) at 256x256."""
    model = moat.build(moat.REFERENCES["tiny_moat_0"]).eval()
    macs = {}
    for size in (224, 256):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, size, size))
        macs[size] = counter.get_total_flops() / 2 / 1e9
    # Conv, linear and attention matmuls only; arch-facts 4.5 counts 0.775G and 1.041G.
    assert macs[224] == pytest.approx(0.775, rel=0.01)
    assert macs[256] == pytest.approx(1.041, rel=0.01)
    assert macs[256] == pytest.approx(1.1, rel=0.06)


def test_searched_architecture_of_the_thesis() -> None:
    # 7.2.2: (MBConv no SE) | (MOAT block) | (MBConv & SE + MLP) | (MOAT block & SE).
    searched = moat.REFERENCES["tiny_moat_0_searched"]
    assert searched.cells == ("mbconv", "mbconv+attention", "mbconv_se+mlp", "mbconv_se+attention")
    assert (
        dataclasses.replace(searched, cells=moat.REFERENCES["tiny_moat_0"].cells)
        == (moat.REFERENCES["tiny_moat_0"])
    )
    # The thesis also reruns both with MOAT-0's channels.
    moat_0 = moat.REFERENCES["moat_0"]
    assert moat.REFERENCES["moat_0_searched"] == dataclasses.replace(moat_0, cells=searched.cells)
    assert (moat_0.widths, moat_0.stem_width) == ((96, 192, 384, 768), 64)


def test_suggest_is_four_categorical_stage_cells() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    config = moat.suggest(trial)
    assert set(trial.distributions) == set(moat.PARAM_NAMES)
    for distribution in trial.distributions.values():
        assert isinstance(distribution, optuna.distributions.CategoricalDistribution)
        assert tuple(distribution.choices) == tuple(moat.CELLS)
    assert config == dataclasses.replace(moat.REFERENCES["tiny_moat_0"], cells=config.cells)

    # A separate study: one study cannot hold two choice lists under the same name.
    trial = optuna.create_study().ask()
    moat.suggest(trial, include_parallel=False)
    for distribution in trial.distributions.values():
        assert tuple(distribution.choices) == moat.FEASIBLE_CELLS

    fixed = optuna.trial.FixedTrial(dict(zip(moat.PARAM_NAMES, moat.PARALLEL_CELLS * 2)))
    config = moat.suggest(fixed, base=moat.REFERENCES["moat_0"])
    assert config.cells == moat.PARALLEL_CELLS * 2
    assert config.widths == moat.REFERENCES["moat_0"].widths


def test_config_rejects_infeasible_values() -> None:
    cells = moat.REFERENCES["tiny_moat_0"].cells
    with pytest.raises(ValueError):
        moat.MOATConfig(cells[:3])
    with pytest.raises(ValueError):
        moat.MOATConfig(("mlp+mlp",) + cells[1:])
    with pytest.raises(ValueError):
        moat.MOATConfig(cells, depths=(2, 0, 7, 2))


def test_every_sample_builds_and_runs() -> None:
    """Random samples of the full space (tiny-MOAT-0 widths) on a small input."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: set[str] = set()
    for i in range(20):
        config = moat.suggest(study.ask())
        seen.update(config.cells)
        model = moat.build(config, num_classes=3)
        out = model(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 3)
        assert torch.isfinite(out).all()
        if i < 2:
            out.sum().backward()
            assert all(p.grad is not None for p in model.parameters())
    assert seen == set(moat.CELLS)


@pytest.mark.parametrize("cell", list(moat.CELLS))
def test_every_cell_runs_on_any_input_size(cell: str) -> None:
    config = moat.MOATConfig((cell,) * 4, depths=(1, 2, 1, 1), widths=(32, 48, 64, 96))
    for bias in (True, False):
        model = moat.build(dataclasses.replace(config, relative_position_bias=bias), num_classes=4)
        for height, width in ((32, 32), (40, 24), (2, 2)):
            out = model(torch.randn(2, 3, height, width))
            assert out.shape == (2, 4)
            assert torch.isfinite(out).all()


def test_relative_position_bias() -> None:
    torch.manual_seed(0)
    attention = moat.SelfAttention(64, 64, stride=1, table_size=4, position_bias=True)
    assert attention.heads == 2
    assert attention.position_bias is not None
    assert attention.position_bias.shape == (2, 7, 7)
    table = attention.position_bias
    # At the table's own size: bias(query q, key k) = table[ky - qy + 3, kx - qx + 3].
    bias = attention._bias(4, 4)
    assert bias.shape == (2, 16, 16)
    for qy, qx, ky, kx in itertools.product(range(4), repeat=4):
        assert torch.equal(bias[:, 4 * qy + qx, 4 * ky + kx], table[:, ky - qy + 3, kx - qx + 3])
    # Other sizes resize the table, and a constant table stays constant.
    assert attention._bias(2, 3).shape == (2, 6, 6)
    with torch.no_grad():
        table.fill_(0.5)
    assert torch.allclose(attention._bias(5, 3), torch.full((2, 15, 15), 0.5))
    without = moat.SelfAttention(64, 64, stride=1, table_size=4, position_bias=False)
    assert without.position_bias is None
    assert _params(attention) - _params(without) == 2 * 7 * 7


def test_strided_attention_opens_a_stage() -> None:
    attention = moat.SelfAttention(32, 64, stride=2, table_size=8, position_bias=True)
    assert attention(torch.randn(2, 32, 9, 16)).shape == (2, 64, 5, 8)
    cell = moat.Cell("attention+mlp", 32, 64, 2, 8, True)
    assert cell(torch.randn(2, 32, 9, 16)).shape == (2, 64, 5, 8)
