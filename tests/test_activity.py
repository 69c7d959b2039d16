import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

from optuna_deepens.activity import ActivityRules
from optuna_deepens.encoding import SearchSpaceEncoder

ENCODER = SearchSpaceEncoder(
    {
        "block": CategoricalDistribution(["conv", "attn"]),
        "kernel": IntDistribution(3, 7, step=2),
        "heads": CategoricalDistribution([1, 2, 4]),
        "n_layers": IntDistribution(1, 3),
        "ch1": IntDistribution(8, 64, log=True),
        "ch2": IntDistribution(8, 64, log=True),
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
    }
)


def _observed() -> np.ndarray:
    rows = []
    for block in ("conv", "attn"):
        for n_layers in (1, 2, 3):
            params = {"block": block, "n_layers": n_layers, "lr": 1e-3}
            params.update({"kernel": 5} if block == "conv" else {"heads": 2})
            params.update({f"ch{i}": 16 for i in range(1, n_layers)})
            rows.append(params)
    return ENCODER.to_internal(rows)


def test_switches_are_learnt_and_applied_to_unseen_combinations() -> None:
    rules = ActivityRules(ENCODER, _observed())
    assert len(rules) == 4  # kernel, heads (by block), ch1, ch2 (by n_layers)
    candidate = ENCODER.to_internal(
        [{"block": "attn", "kernel": 3, "heads": 4, "n_layers": 2, "ch1": 8, "ch2": 8}]
    )
    candidate[np.isnan(candidate)] = 1e-3
    guess = np.ones_like(candidate, dtype=bool)  # The parent's mask: everything active.
    active = rules.apply(candidate, guess)[0]
    names = {name for name, used in zip(ENCODER.names, active) if used}
    assert names == {"block", "heads", "n_layers", "ch1", "lr"}


def test_unseen_switch_value_keeps_the_guess() -> None:
    observed = _observed()
    observed = observed[observed[:, ENCODER.index["n_layers"]] < 3]  # n_layers=3 never seen.
    rules = ActivityRules(ENCODER, observed)
    candidate = ENCODER.to_internal([{"block": "conv", "kernel": 3, "n_layers": 3}])
    candidate[np.isnan(candidate)] = 16
    guess = np.zeros_like(candidate, dtype=bool)
    for name in ("block", "kernel", "n_layers", "ch1", "heads"):
        guess[0, ENCODER.index[name]] = True
    active = dict(zip(ENCODER.names, rules.apply(candidate, guess)[0]))
    assert active["ch1"]  # Learnt for n_layers 1 and 2 only: 3 keeps the guess.
    assert not active["heads"]  # block == "conv" rules heads out, whatever the guess.
    assert active["kernel"]
    assert not active["ch2"]  # Never seen active: no rule, the guess stands.
