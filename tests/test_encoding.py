import math

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
import pytest

from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.encoding import params_key
from optuna_deepens.encoding import union_search_space
from optuna_deepens.encoding import unscale_numeric

SPACE = {
    "op": CategoricalDistribution(["conv", "attn", None]),
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "depth": IntDistribution(1, 9, step=2),
    "heads": IntDistribution(1, 64, log=True),
}


def test_layout_has_a_flag_per_parameter_and_one_hot_categoricals() -> None:
    encoder = SearchSpaceEncoder(SPACE)
    assert encoder.names == ["depth", "heads", "lr", "op"]
    assert encoder.n_features == 2 + 2 + 2 + (1 + 3)


def test_inactive_parameter_is_zero_apart_from_its_flag() -> None:
    encoder = SearchSpaceEncoder(SPACE)
    internal = encoder.to_internal([{"op": "attn", "lr": 1e-2}, {"op": None, "depth": 9}])
    assert math.isnan(internal[0, encoder.index["depth"]])
    features = encoder.encode(internal)
    depth = encoder.offsets[encoder.index["depth"]]
    op = encoder.offsets[encoder.index["op"]]
    np.testing.assert_array_equal(features[0, depth : depth + 2], [0, 0])
    # depth 9 is the top grid point: the centre of the last of five equal bins, 0.9.
    np.testing.assert_allclose(features[1, depth : depth + 2], [1, 0.9], rtol=1e-6)
    np.testing.assert_array_equal(features[0, op : op + 4], [1, 0, 1, 0])
    np.testing.assert_array_equal(features[1, op : op + 4], [1, 0, 0, 1])


def test_log_scaling_puts_the_geometric_middle_at_one_half() -> None:
    encoder = SearchSpaceEncoder({"lr": FloatDistribution(1e-4, 1e-2, log=True)})
    features = encoder.encode(encoder.to_internal([{"lr": 1e-3}]))
    assert features[0, 1] == pytest.approx(0.5)


def test_to_params_round_trips_external_values_and_types() -> None:
    encoder = SearchSpaceEncoder(SPACE)
    params = {"op": None, "lr": 0.003, "depth": 5, "heads": 8}
    back = encoder.to_params(encoder.to_internal([params])[0])
    assert back == params
    assert isinstance(back["depth"], int) and isinstance(back["lr"], float)


def test_unscale_lands_on_the_grid_and_covers_it_evenly() -> None:
    distribution = IntDistribution(1, 9, step=2)
    values = unscale_numeric(distribution, np.random.default_rng(0).random(10_000))
    counts = {v: int((values == v).sum()) for v in (1, 3, 5, 7, 9)}
    assert set(np.unique(values)) == {1, 3, 5, 7, 9}
    assert min(counts.values()) > 1_700  # About 2,000 each.


def test_choice_no_longer_offered_becomes_inactive() -> None:
    encoder = SearchSpaceEncoder({"op": CategoricalDistribution(["a", "b"])})
    assert math.isnan(encoder.to_internal([{"op": "gone"}])[0, 0])


def test_keys_ignore_inactive_entries_and_match_params_key() -> None:
    encoder = SearchSpaceEncoder(SPACE)
    internal = encoder.to_internal([{"op": "conv", "depth": 3}])
    (key,) = encoder.keys(internal)
    assert key == params_key({"op": 0.0, "depth": 3.0, "lr": math.nan})


def test_union_keeps_conditional_parameters_and_latest_range() -> None:
    union = union_search_space(
        [{"a": IntDistribution(0, 5)}, {"b": IntDistribution(0, 1)}, {"a": IntDistribution(0, 9)}]
    )
    assert union == {"a": IntDistribution(0, 9), "b": IntDistribution(0, 1)}


def test_unsupported_distribution_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unsupported distribution"):
        SearchSpaceEncoder({"x": object()})  # type: ignore[dict-item]
