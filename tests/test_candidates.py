import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

from optuna_deepens.candidates import deduplicate
from optuna_deepens.candidates import mutate
from optuna_deepens.candidates import sample_uniform
from optuna_deepens.coordination import TakenArchitectures
from optuna_deepens.coordination import params_pattern
from optuna_deepens.encoding import SearchSpaceEncoder

ENCODER = SearchSpaceEncoder(
    {
        **{f"e{i}": CategoricalDistribution(list("abcde")) for i in range(4)},
        "w": FloatDistribution(0.0, 1.0, step=0.1),
        "k": IntDistribution(1, 64, log=True),
    }
)


def test_uniform_draws_are_valid_internal_values() -> None:
    values = sample_uniform(ENCODER, 500, np.random.default_rng(0))
    for j, distribution in enumerate(ENCODER.distributions):
        assert all(distribution._contains(v) for v in values[:, j])


def test_mutants_differ_from_their_parent_in_one_to_three_active_parameters() -> None:
    rng = np.random.default_rng(0)
    parents = sample_uniform(ENCODER, 4, rng)
    parents[0, ENCODER.index["k"]] = np.nan  # An inactive branch in one parent.
    children, parent_index = mutate(ENCODER, parents, 2000, rng)
    source = parents[parent_index]
    active = ~np.isnan(source)
    edits = ((children != source) & active).sum(axis=1)
    assert edits.min() >= 1 and edits.max() <= 3
    assert set(np.bincount(edits)[1:].nonzero()[0] + 1) == {1, 2, 3}
    assert not np.isnan(children).any()  # Inactive entries are filled for branches to open.
    for j, distribution in enumerate(ENCODER.distributions):
        assert all(distribution._contains(v) for v in children[:, j])


def test_deduplicate_drops_repeats_and_taken_keys() -> None:
    values = sample_uniform(ENCODER, 3, np.random.default_rng(0))
    values = np.vstack([values, values[:1]])
    active = np.ones_like(values, dtype=bool)
    taken = TakenArchitectures([params_pattern(ENCODER, ENCODER.to_params(values[1]))])
    kept, _, keys = deduplicate(ENCODER, values, active, taken)
    assert len(kept) == 2
    assert ENCODER.keys(values[1:2])[0] not in keys


def test_inactive_entries_do_not_make_rows_distinct() -> None:
    values = sample_uniform(ENCODER, 2, np.random.default_rng(0))
    values[1, :4] = values[0, :4]  # Same categoricals, different numbers.
    active = np.ones_like(values, dtype=bool)
    active[:, 4:] = False
    kept, _, _ = deduplicate(ENCODER, values, active, TakenArchitectures([]))
    assert len(kept) == 1


def test_grid_enumerates_small_discrete_spaces_only() -> None:
    from optuna.distributions import CategoricalDistribution
    from optuna.distributions import FloatDistribution
    from optuna.distributions import IntDistribution

    from optuna_deepens.candidates import grid
    from optuna_deepens.encoding import SearchSpaceEncoder

    space = {
        "op": CategoricalDistribution(["a", "b", "c"]),
        "depth": IntDistribution(1, 4),
        "ratio": FloatDistribution(0.0, 1.0, step=0.5),
    }
    rows = grid(SearchSpaceEncoder(space), 100)
    assert rows is not None and rows.shape == (36, 3)
    assert len({tuple(r) for r in rows}) == 36
    assert grid(SearchSpaceEncoder(space), 35) is None  # Larger than allowed.
    continuous = {**space, "lr": FloatDistribution(1e-4, 1e-1, log=True)}
    assert grid(SearchSpaceEncoder(continuous), 10**6) is None
