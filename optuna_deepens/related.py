"""Finished studies of the same space as further heads of the ensemble: transfer between studies.

A space is rarely searched once: CIFAR-10 first, then the user's data, then another device. The
results of a finished study are knowledge about the space that a new study would otherwise
relearn (on NAS-Bench-201 the three datasets' accuracies have Spearman 0.95-0.98). Each related
study becomes a head ``related:<study name>`` on the shared trunk, fitted on its own copula scale
(studies need not share units or direction), in a mini-batch of its own at every step, so a
new study's trunk starts from features that predicted good architectures before. Its best
architectures are also where a new study starts: the first startup trials and extra mutation
parents.
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.encoding import modelled_space
from optuna_deepens.encoding import union_search_space
from optuna_deepens.ensemble import Rows
from optuna_deepens.surrogate import SearchSpaceMismatchError
from optuna_deepens.transforms import CopulaTransform
from optuna_deepens.transforms import direction_sign

RELATED_PREFIX = "related:"
# A related study needs a few results for a copula scale worth learning.
_MIN_RELATED_RESULTS = 2
# Results the study's model predicted before it learnt them, needed before a related study's
# agreement is measured; until then each related study is trusted fully.
MIN_AGREEMENT_ROWS = 5
# Startup results needed among a related study's picks and among the uniform draws before the
# picks' advantage is measured; until then it is trusted fully.
MIN_STARTUP_GROUP = 2
# A related study that orders the study's results no better than chance still trains its head
# with this weight, so that its predictions stay measurable as the study's results arrive.
_MIN_WEIGHT = 0.1
# A related study's best architectures this deep are its picks: those tried at startup show,
# before any model is fitted, whether it knows this study's good architectures.
_N_PICKS = 16

RelatedStudy = optuna.Study | tuple[str | BaseStorage, str]


@dataclass(frozen=True)
class RelatedResults:
    """One finished study's COMPLETE results, best first, as the targets of one head."""

    study_name: str
    params: tuple[dict[str, Any], ...]
    targets: np.ndarray  # [n] on the study's copula scale, larger is better, best first.
    distributions: dict[str, BaseDistribution]

    @property
    def head(self) -> str:
        return RELATED_PREFIX + self.study_name

    def rows(self, encoder: SearchSpaceEncoder) -> Rows:
        return Rows(encoder.encode(encoder.to_internal(self.params)), {self.head: self.targets})

    def picks(self, encoder: SearchSpaceEncoder) -> set[Hashable]:
        """Keys (:meth:`SearchSpaceEncoder.keys`) of the study's best architectures."""
        return set(encoder.keys(encoder.to_internal(self.params[:_N_PICKS])))


def load_related(owner: str, studies: Sequence[RelatedStudy]) -> tuple[RelatedResults, ...]:
    """Each study's results, read once; a study that cannot serve is an error naming it."""
    if isinstance(studies, optuna.Study) or _is_storage_and_name(studies):
        studies = [studies]  # type: ignore[list-item]
    if isinstance(studies, (str, bytes)) or not isinstance(studies, Iterable):
        raise TypeError(
            f"{owner}(related_studies={studies!r}): expected a list of studies, each an "
            "optuna.Study or a (storage, study_name) pair."
        )
    loaded = [_load(owner, spec) for spec in studies]
    names = [r.study_name for r in loaded]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(
            f"{owner}(related_studies=...): the study {duplicated[0]!r} is given twice. Give "
            "each related study once."
        )
    return tuple(loaded)


def _is_storage_and_name(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[1], str)
        and isinstance(value[0], (str, BaseStorage))
    )


def _load(owner: str, spec: Any) -> RelatedResults:
    study = _study(owner, spec)
    if len(study.directions) != 1:
        raise ValueError(
            f"{owner}(related_studies=...): {study.study_name!r} has {len(study.directions)} "
            "objectives; a related study must have one. Pass a single-objective study."
        )
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value) and t.params
    ]
    if len(trials) < _MIN_RELATED_RESULTS:
        raise ValueError(
            f"{owner}(related_studies=...): {study.study_name!r} has {len(trials)} finished "
            f"trial(s) with a finite value; at least {_MIN_RELATED_RESULTS} are needed. Let it "
            "run longer, or leave it out."
        )
    values = direction_sign(study.direction) * np.array([t.value for t in trials])
    order = np.argsort(-values, kind="stable")
    targets = CopulaTransform.fit(values)(values)
    return RelatedResults(
        study_name=study.study_name,
        params=tuple(dict(trials[i].params) for i in order),
        targets=targets[order],
        distributions=union_search_space(t.distributions for t in trials),
    )


def _study(owner: str, spec: Any) -> optuna.Study:
    if isinstance(spec, optuna.Study):
        return spec
    if _is_storage_and_name(spec):
        storage, name = spec
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            raise ValueError(
                f"{owner}(related_studies=...): no study named {name!r} in {storage!r}. Check "
                "the name with optuna.get_all_study_names(storage)."
            ) from None
    raise TypeError(
        f"{owner}(related_studies=...): got {spec!r}; give optuna.Study objects or "
        "(storage, study_name) pairs."
    )


def check_related_space(
    related: Sequence[RelatedResults], distributions: Mapping[str, BaseDistribution]
) -> None:
    """Raise :class:`SearchSpaceMismatchError` when a related study searched another space.

    Either study may not have met every parameter (a branch of a conditional space it never
    opened), so only the parameters both have are compared: another choice list or range is a
    mismatch, and so is having no parameter in common.
    """
    space, _ = modelled_space(distributions)
    for results in related:
        shared = [n for n in space if n in results.distributions]
        differing = sorted(n for n in shared if results.distributions[n] != space[n])
        if differing or (space and not shared):
            raise SearchSpaceMismatchError(
                f"The related study {results.study_name!r} searched another "
                f"space: parameters {differing or sorted(space)} have other ranges or choices, "
                "or it never had them. Give related_studies of this search space only."
            )


def agreement(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Kendall's tau between a related head's predictions and the study's own results.

    Rank agreement, not error: related studies may have other units, and what transfers is which
    architectures are better. 1 orders every pair alike, 0 is chance, -1 reverses them.
    """
    pairs = np.sign(predicted[:, None] - predicted[None, :]) * np.sign(
        observed[:, None] - observed[None, :]
    )
    n = len(observed)
    return float(pairs.sum() / (n * (n - 1))) if n > 1 else 0.0


def transfer_weight(related_tau: float, own_tau: float) -> float:
    """How much a related study is trusted: how well its head ordered the study's new results,
    against how well the study's own head did, both predicting before they learnt them.

    Measured out of sample because the heads share the trunk: once a result is learnt, even an
    unrelated head's predictions follow it (on NAS-Bench-Graph, in-sample agreement of a
    related head was about 0.5 where the datasets' rankings barely agree). Fully trusted while
    it predicts new results as well as the study's own model (so early on, when that model knows
    little); in proportion below; at the floor when it orders them no better than chance.
    """
    if related_tau <= 0:
        return _MIN_WEIGHT
    if own_tau <= related_tau:
        return 1.0
    return float(max(related_tau / own_tau, _MIN_WEIGHT))


def pick_advantage(picked: np.ndarray, drawn: np.ndarray) -> float:
    """Probability that a related study's pick beats a uniform draw here, ties counting half.

    1 when its best are this study's best too, 0.5 when they are no better than chance: on
    NAS-Bench-Graph a dataset's top 1% lies at the 21st-83rd percentile of another's.
    """
    wins = picked[:, None] > drawn[None, :]
    ties = picked[:, None] == drawn[None, :]
    return float(wins.mean() + 0.5 * ties.mean())


def startup_weight(advantage: float) -> float:
    """Trust before any prediction was tested: 1 when the picks beat every draw, the floor
    when they beat half of them or fewer (:func:`pick_advantage`)."""
    return float(min(1.0, max(_MIN_WEIGHT, 2.0 * advantage - 1.0)))


def trusted_best(
    related: Sequence[RelatedResults], weights: Mapping[str, float], n: int
) -> list[dict[str, Any]]:
    """Up to ``n`` best architectures of each related study, fewer the less it is trusted."""
    return [
        params
        for results in related
        for params in results.params[: round(weights.get(results.head, 1.0) * n)]
    ]


def best_params(related: Sequence[RelatedResults], n: int) -> list[dict[str, Any]]:
    """The ``n`` best architectures over the related studies, taking each study's in turn."""
    merged: list[dict[str, Any]] = []
    for rank in range(max((len(r.params) for r in related), default=0)):
        merged += [r.params[rank] for r in related if rank < len(r.params)]
        if len(merged) >= n:
            break
    return merged[:n]
