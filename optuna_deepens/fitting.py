"""Fitting the deep ensemble to a study's data, once per proposal, as cheaply as possible.

The ensemble is kept between proposals and warm-started (``EnsembleConfig.warm_steps``) while
the data only grew and the heads and encoding stayed the same; otherwise it is built afresh,
from the pretrained surrogate's weights when there is one (thesis 5.2.3), and trained for
``cold_steps``. With a pretrained surrogate, its table can be replayed during every fit so that
the shared embedding keeps what the zero-cost metrics taught it.
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
from typing import Any

import numpy as np

from optuna_deepens._validation import check_int
from optuna_deepens.context import derive_seed
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.ensemble import DeepEnsemble
from optuna_deepens.ensemble import EnsembleConfig
from optuna_deepens.ensemble import Rows
from optuna_deepens.related import MIN_AGREEMENT_ROWS
from optuna_deepens.related import MIN_STARTUP_GROUP
from optuna_deepens.related import RelatedResults
from optuna_deepens.related import agreement
from optuna_deepens.related import pick_advantage
from optuna_deepens.related import startup_weight
from optuna_deepens.related import transfer_weight
from optuna_deepens.surrogate import PretrainedSurrogate
from optuna_deepens.training_data import OBJECTIVE
from optuna_deepens.training_data import TrainingData


def ensemble_config(
    owner: str,
    *,
    n_members: int | None,
    config: EnsembleConfig | None,
    pretrained: PretrainedSurrogate | None,
) -> EnsembleConfig:
    """The ensemble's shape from the sampler's options; a conflict is an error naming both.

    A pretrained surrogate fixes the network shape (members, trunk, head), since its weights
    are the starting point of every fit.
    """
    resolved = config or EnsembleConfig()
    if n_members is not None:
        n_members = check_int(
            owner, "n_members", n_members, minimum=2, why="their spread is the uncertainty"
        )
        default = EnsembleConfig().n_members
        if config is not None and n_members != config.n_members != default:
            raise ValueError(
                f"{owner}(n_members={n_members}, ensemble_config=EnsembleConfig("
                f"n_members={config.n_members}, ...)): two member counts. Give it once, in "
                "either place."
            )
        resolved = dataclasses.replace(resolved, n_members=n_members)
    if pretrained is None:
        return resolved
    shape = pretrained.config
    if n_members is not None and n_members != shape.n_members:
        raise ValueError(
            f"{owner}(n_members={n_members}): the pretrained surrogate has {shape.n_members} "
            "members and the sampler adopts its shape. Leave n_members out, or pretrain with "
            "EnsembleConfig(n_members=...)."
        )
    return dataclasses.replace(
        resolved,
        n_members=shape.n_members,
        trunk_sizes=shape.trunk_sizes,
        head_size=shape.head_size,
    )


class EnsembleFitter:
    """The ensemble of the last fit, and how to bring it up to date with new data.

    Args:
        config: Network shape and training schedule.
        seed: The sampler's seed; each cold fit derives its own from it.
        pretrained: Starting weights and metric heads, or ``None``.
        replay_pretraining: Replay the pretraining table during fits.
        head_weights: Loss weight per head (others 1).
        related: Finished studies of the space, each a head trained on its own rows, with a
            weight that follows its agreement with the study's results (:attr:`related_weights`).
    """

    def __init__(
        self,
        *,
        config: EnsembleConfig,
        seed: int,
        pretrained: PretrainedSurrogate | None = None,
        replay_pretraining: bool = True,
        head_weights: Mapping[str, float] | None = None,
        related: Sequence[RelatedResults] = (),
    ) -> None:
        self.config = config
        self.seed = seed
        self.pretrained = pretrained
        self._replay_pretraining = replay_pretraining
        self._head_weights = head_weights
        self._related = tuple(related)
        self._related_weights = {r.head: 1.0 for r in self._related}
        self._startup_weights: dict[str, float] = {}  # From the startup picks alone.
        # Result key -> the heads' mean predictions before the result was learnt: own, related.
        self._prospective: dict[Hashable, tuple[float, dict[str, float]]] = {}
        self._learnt: set[Hashable] = set()  # Keys of the results the last fit learnt.
        self._replay_rows: dict[Hashable, list[Rows]] = {}
        self._ensemble: DeepEnsemble | None = None
        self._key: tuple[Any, ...] | None = None
        self._fitted_ids: frozenset[int] = frozenset()
        self._encoder: SearchSpaceEncoder | None = None

    @property
    def ensemble(self) -> DeepEnsemble | None:
        """The ensemble of the last fit, ``None`` before the first."""
        return self._ensemble

    @property
    def related_weights(self) -> dict[str, float]:
        """Trust in each related head: its loss weight in the next fit and its share of the
        mutation parents. The lower of two measures: how well it predicted the study's new
        results (:func:`~optuna_deepens.related.transfer_weight`, once five exist) and whether
        its best architectures beat the uniform draws at startup
        (:func:`~optuna_deepens.related.startup_weight`), which exists from the first fit."""
        return {
            head: min(weight, self._startup_weights.get(head, 1.0))
            for head, weight in self._related_weights.items()
        }

    def fit(self, encoder: SearchSpaceEncoder, data: TrainingData) -> DeepEnsemble:
        """The ensemble trained on ``data``: warm-started when only new rows were added."""
        heads = [*data.learnt_heads, *self._metric_heads(data), *(r.head for r in self._related)]
        conditioned = tuple(data.conditions)
        # With related studies and one objective: the results (rows with a finite objective)
        # and every row's key, for judging the related heads; computed once per fit.
        observed = data.targets.get(OBJECTIVE) if self._related else None
        if observed is not None:
            keys = encoder.keys(data.internal)
            results = [int(i) for i in np.flatnonzero(np.isfinite(observed))]
            self._predict_new_results(encoder, data, keys, results)
            self._startup_weights = self._startup_trust(encoder, data, observed, keys)
        key = (encoder.signature, tuple(heads), conditioned)
        if self._ensemble is not None and self._key == key and self._fitted_ids <= data.trial_ids:
            if self._fitted_ids == data.trial_ids:
                return self._ensemble
            steps = self.config.warm_steps
        else:
            seed = derive_seed(self.seed, len(data.trial_ids))
            self._ensemble = self._build(encoder, heads, conditioned, seed)
            self._key = key
            steps = self.config.cold_steps
        self._ensemble.fit(
            data.features,
            data.targets,
            steps,
            conditions=data.conditions,
            replay=self._replay(encoder),
            head_weights={**(self._head_weights or {}), **self.related_weights},
        )
        self._fitted_ids = data.trial_ids
        self._encoder = encoder
        if observed is not None:
            self._related_weights = self._agreements(observed, keys, results)
            self._learnt = set(keys)
        return self._ensemble

    def predict(self, params: Sequence[Mapping[str, Any]], head: str) -> np.ndarray | None:
        """Each member's prediction of ``head`` by the last fit, ``[members, n]``; ``None``
        before the first fit."""
        if self._ensemble is None or self._encoder is None:
            return None
        encoder = self._encoder
        return self._ensemble.predict(encoder.encode(encoder.to_internal(params)), head)

    def _predict_new_results(
        self,
        encoder: SearchSpaceEncoder,
        data: TrainingData,
        keys: Sequence[Hashable],
        results: Sequence[int],
    ) -> None:
        """Record the last fit's predictions of the results it has not learnt yet."""
        ensemble = self._ensemble
        if ensemble is None or self._encoder is None:
            return  # No fit yet.
        if self._encoder.signature != encoder.signature:
            return
        known = self._learnt | self._prospective.keys()
        new = [i for i in results if keys[i] not in known]
        if not new:
            return
        features = data.features[new]
        own = ensemble.predict(features, OBJECTIVE).mean(axis=0)
        related = {r.head: ensemble.predict(features, r.head).mean(axis=0) for r in self._related}
        for n, i in enumerate(new):
            self._prospective[keys[i]] = (
                float(own[n]),
                {h: float(v[n]) for h, v in related.items()},
            )

    def _agreements(
        self, observed: np.ndarray, keys: Sequence[Hashable], results: Sequence[int]
    ) -> dict[str, float]:
        """Each related head's transfer weight, from the results predicted before learnt."""
        rows = [i for i in results if keys[i] in self._prospective]
        if len(rows) < MIN_AGREEMENT_ROWS:
            return self._related_weights
        records = [self._prospective[keys[i]] for i in rows]
        values = observed[rows]
        own_tau = agreement(np.array([own for own, _ in records]), values)
        return {
            r.head: transfer_weight(
                agreement(np.array([related[r.head] for _, related in records]), values), own_tau
            )
            for r in self._related
        }

    def _startup_trust(
        self,
        encoder: SearchSpaceEncoder,
        data: TrainingData,
        observed: np.ndarray,
        keys: Sequence[Hashable],
    ) -> dict[str, float]:
        """Each related study's weight from the startup results: its picks against the uniform
        draws (startup results that no related study picked).

        Needed because the first fits come before any prediction can be tested: trusted fully,
        an unrelated study steered them where it was good, not where this study is.
        """
        n = len(data.startup)
        values = observed[:n]  # The usable trials' rows come first.
        results = data.startup & np.isfinite(values)
        picks = {r.head: r.picks(encoder) for r in self._related}
        is_pick = {h: np.array([keys[i] in p for i in range(n)], bool) for h, p in picks.items()}
        drawn = values[results & ~np.logical_or.reduce([*is_pick.values()])]
        weights = {}
        for head, mask in is_pick.items():
            picked = values[results & mask]
            if min(len(picked), len(drawn)) >= MIN_STARTUP_GROUP:
                weights[head] = startup_weight(pick_advantage(picked, drawn))
        return weights

    def _build(
        self,
        encoder: SearchSpaceEncoder,
        heads: Sequence[str],
        conditioned: tuple[str, ...],
        seed: int,
    ) -> DeepEnsemble:
        if self.pretrained is None:
            return DeepEnsemble(
                encoder.n_features, heads, config=self.config, seed=seed, conditioned=conditioned
            )
        return self.pretrained.ensemble(
            heads, config=self.config, seed=seed, conditioned=conditioned
        )

    def _metric_heads(self, data: TrainingData) -> list[str]:
        """Metrics of the pretraining table first, then any other recorded on trials."""
        pretrained = self.pretrained.metric_names if self.pretrained is not None else ()
        return [*pretrained, *sorted(set(data.metric_names) - set(pretrained))]

    def _replay(self, encoder: SearchSpaceEncoder) -> list[Rows]:
        """The rows trained beside the study's: the pretraining table, the related studies'."""
        key = encoder.signature
        if key not in self._replay_rows:
            parts = []
            if self.pretrained is not None and self._replay_pretraining:
                table = self.pretrained.pretraining_set
                parts.append(table.rows(encoder, self.pretrained.metric_names))
            if self._related:
                parts.append(_stacked([r.rows(encoder) for r in self._related]))
            self._replay_rows[key] = parts
        return self._replay_rows[key]


def _stacked(parts: Sequence[Rows]) -> Rows:
    """One set of rows from several, each target missing (``NaN``) where a part lacks it."""
    names = sorted(set().union(*(p.targets for p in parts)))
    targets = {
        name: np.concatenate([p.targets.get(name, np.full(p.n_rows, np.nan)) for p in parts])
        for name in names
    }
    return Rows(np.concatenate([p.features for p in parts]), targets)
