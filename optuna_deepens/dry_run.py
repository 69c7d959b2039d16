"""Dry runs of a user's ``search_space(trial)`` function, without training anything.

A conditional NAS space is only known exactly by running its ``suggest_*`` calls. Given a
proposal (a value for every parameter of the union space), a dry run replays the user's function
with a stand-in trial that answers each ``suggest_*`` from the proposal when the value is valid
for the distribution asked, and draws a fresh value otherwise. What the function asked for is
then exactly the set of active parameters, with exact distributions.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalChoiceType
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial

from optuna_deepens import coordination
from optuna_deepens.encoding import unscale_numeric

SearchSpaceFunction = Callable[[Any], Any]


class SearchSpaceError(ValueError):
    """The user's ``search_space`` function failed during a dry run."""


AnswerFunction = Callable[[str, BaseDistribution], Any]
"""Chooses the value of a ``suggest_*`` call from the parameter's name and distribution."""


class DryRunTrial:
    """Answers ``suggest_*`` calls like :class:`optuna.Trial` without touching any storage.

    Args:
        proposal: Parameter name to *external* value to return when valid.
        rng: Source of values for parameters the proposal lacks or cannot serve.
        number: Reported as ``trial.number`` for functions that read it.
        answer: Chooses every value instead of ``proposal`` and ``rng``, e.g. to walk all the
            branches of a search space; it gets the parameter's name and distribution.
    """

    def __init__(
        self,
        proposal: Mapping[str, Any],
        rng: np.random.Generator,
        number: int = -1,
        *,
        answer: AnswerFunction | None = None,
    ) -> None:
        self._proposal = proposal
        self._rng = rng
        self._answer = answer or self._from_proposal
        self.number = number
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}
        self.user_attrs: dict[str, Any] = {}
        self.returned: Any = None  # What the search_space function returned (its config).

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return self._suggest(name, FloatDistribution(low, high, step=step, log=log))

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        return self._suggest(name, IntDistribution(low, high, step=step, log=log))

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType]
    ) -> CategoricalChoiceType:
        return self._suggest(name, CategoricalDistribution(choices))

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def report(self, value: float, step: int) -> None:
        """Ignored: a dry run trains nothing."""

    def should_prune(self) -> bool:
        return False

    def _suggest(self, name: str, distribution: BaseDistribution) -> Any:
        if name in self.params:  # Optuna returns the first value for a repeated name.
            return self.params[name]
        value = self._answer(name, distribution)
        self.params[name] = value
        self.distributions[name] = distribution
        return value

    def _from_proposal(self, name: str, distribution: BaseDistribution) -> Any:
        value = self._proposal.get(name)
        if value is None or not _is_valid(distribution, value):
            value = _draw(distribution, self._rng)
        return value


def _is_valid(distribution: BaseDistribution, value: Any) -> bool:
    try:
        internal = distribution.to_internal_repr(value)
    except (ValueError, TypeError):
        return False
    if isinstance(distribution, CategoricalDistribution):
        return True
    return coordination.contains(distribution, internal)


def _draw(distribution: BaseDistribution, rng: np.random.Generator) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[int(rng.integers(len(distribution.choices)))]
    assert isinstance(distribution, (FloatDistribution, IntDistribution))
    internal = float(unscale_numeric(distribution, np.array([rng.random()]))[0])
    return distribution.to_external_repr(internal)


def dry_run(
    search_space: SearchSpaceFunction,
    proposal: Mapping[str, Any],
    rng: np.random.Generator,
    number: int = -1,
) -> DryRunTrial:
    """Run ``search_space`` once against ``proposal``; the returned trial holds what it asked."""
    trial = DryRunTrial(proposal, rng, number)
    try:
        trial.returned = search_space(trial)
    except Exception as error:  # The user's code: any failure is reported with the fix.
        raise SearchSpaceError(
            f"The search_space function raised {type(error).__name__}: {error}. It must only "
            "call trial.suggest_float/suggest_int/suggest_categorical (no training, no "
            "trial.report); check it with DryRunTrial or pass search_space=None."
        ) from error
    return trial


def explore(
    search_space: SearchSpaceFunction, rng: np.random.Generator, n_runs: int = 64
) -> dict[str, BaseDistribution]:
    """The union of distributions met in ``n_runs`` random dry runs of ``search_space``."""
    union: dict[str, BaseDistribution] = {}
    for _ in range(n_runs):
        union.update(dry_run(search_space, {}, rng).distributions)
    return union


def differences(
    search_space: SearchSpaceFunction, trial: FrozenTrial, rng: np.random.Generator
) -> list[str]:
    """How ``search_space``'s calls differ from what the objective asked of ``trial``.

    Empty when the function asks exactly the trial's parameters with the same distributions.
    """
    asked = dry_run(search_space, trial.params, rng, trial.number).distributions
    only_space = sorted(set(asked) - set(trial.distributions))
    only_objective = sorted(set(trial.distributions) - set(asked))
    common = set(asked) & set(trial.distributions)
    changed = sorted(n for n in common if asked[n] != trial.distributions[n])
    return [
        f"{label}: {names}"
        for label, names in (
            ("asked by search_space only", only_space),
            ("asked by the objective only", only_objective),
            ("with other distributions", changed),
        )
        if names
    ]
