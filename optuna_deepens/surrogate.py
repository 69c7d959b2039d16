"""Pretraining the ensemble on zero-cost metrics, and sharing the pretrained result.

Thesis 5.2.3 and eq. 5.1-5.2: every metric gets a head on the shared trunk, and the loss is the
sum of the per-metric losses on standardised targets, so the embedding learns what all metrics
have in common instead of specialising on one ("simultaneous" pretraining). "Sequential"
pretraining, one metric after another with the same total number of steps, is kept for the
ablation of Table 5.2 / Figure 5.7.

A pretrained surrogate is tied to the encoding of its search space. Saved, it lets a new study
of the same space (another dataset, another training recipe) start from it at once (thesis 6.3,
"Reusability"). The file holds tensors and JSON text only and is read with
``torch.load(weights_only=True)``: opening a shared file cannot run code.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import json
import os
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import distribution_to_json
from optuna.distributions import json_to_distribution
import torch

from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.encoding import modelled_space
from optuna_deepens.ensemble import DeepEnsemble
from optuna_deepens.ensemble import EnsembleConfig
from optuna_deepens.pretraining_set import PretrainingSet
from optuna_deepens.training_data import OBJECTIVE

FILE_FORMAT = "optuna-deepens/pretrained-surrogate"
FILE_VERSION = 1
PRETRAINING_MODES = ("simultaneous", "sequential")


class SearchSpaceMismatchError(ValueError):
    """A pretrained surrogate used with a search space it was not trained for."""


class SurrogateFileError(ValueError):
    """A file that :meth:`PretrainedSurrogate.load` cannot read as a pretrained surrogate."""


@dataclass(frozen=True)
class PretrainedSurrogate:
    """A pretrained ensemble with the encoding it expects and the table it learnt.

    Pass it to ``DeepEnsembleSampler(pretrained=...)``. ``pretraining_set`` is kept so that
    the sampler can keep the metric heads trained during the search.
    """

    distributions: dict[str, BaseDistribution]
    metric_names: tuple[str, ...]
    mode: str
    ensemble_state: Mapping[str, Any]
    pretraining_set: PretrainingSet
    final_loss: float

    @property
    def config(self) -> EnsembleConfig:
        saved = dict(self.ensemble_state["config"])
        return EnsembleConfig(**{**saved, "trunk_sizes": tuple(saved["trunk_sizes"])})

    def ensemble(
        self,
        head_names: Sequence[str],
        *,
        config: EnsembleConfig,
        seed: int,
        conditioned: Sequence[str] = (),
    ) -> DeepEnsemble:
        """A fresh copy of the pretrained ensemble; heads it lacks start untrained."""
        return DeepEnsemble.from_state(
            self.ensemble_state,
            head_names=head_names,
            config=config,
            seed=seed,
            conditioned=conditioned,
        )

    def check_space(self, distributions: Mapping[str, BaseDistribution]) -> None:
        """Raise :class:`SearchSpaceMismatchError` unless every parameter is one it knows.

        A study may not have met every parameter yet (conditional branches), so a subset of
        the pretrained space is fine; a new parameter or a changed range is not.
        """
        space, _ = modelled_space(distributions)
        differing = sorted(n for n, d in space.items() if self.distributions.get(n) != d)
        if differing:
            raise SearchSpaceMismatchError(
                "The pretrained surrogate was made for another search space: parameters "
                f"{differing} are new or have other ranges or choices. Pretrain on this space "
                "(build_pretraining_set with the study's search_space function), or leave "
                "pretrained=None."
            )

    # ------------------------------------------------------------------------ file format
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write weights and JSON metadata to one file, loadable with ``weights_only=True``."""
        table = self.pretraining_set
        metadata = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "distributions": {n: distribution_to_json(d) for n, d in self.distributions.items()},
            "metric_names": list(self.metric_names),
            "mode": self.mode,
            "final_loss": self.final_loss,
            "pretraining_set": {
                "distributions": {
                    n: distribution_to_json(d) for n, d in table.distributions.items()
                },
                "params": list(table.params),
                "metrics": {n: [_json_float(v) for v in vs] for n, vs in table.metrics.items()},
            },
        }
        state = dict(self.ensemble_state)
        torch.save({"metadata": json.dumps(metadata), "ensemble": state}, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PretrainedSurrogate:
        """Read a file written by :meth:`save`.

        Raises:
            SurrogateFileError: For anything else: not a torch file, a file that would need
                pickle, another format or version, or metadata and weights that do not fit.
        """
        metadata, state = _read_file(path)
        try:
            surrogate = cls._from_contents(metadata, state)
            surrogate._check_weights()
        except Exception as error:
            raise SurrogateFileError(
                f"{path} is damaged: its metadata or weights do not fit together "
                f"({type(error).__name__}: {error}). Pretrain again, or save it again with "
                "PretrainedSurrogate.save."
            ) from error
        return surrogate

    @classmethod
    def _from_contents(
        cls, metadata: Mapping[str, Any], state: Mapping[str, Any]
    ) -> PretrainedSurrogate:
        """The surrogate that :meth:`save` wrote as ``metadata`` and ``state``."""
        table = metadata["pretraining_set"]
        pretraining_set = PretrainingSet(
            {n: json_to_distribution(d) for n, d in table["distributions"].items()},
            tuple(table["params"]),
            {n: np.array(vs, dtype=float) for n, vs in table["metrics"].items()},
        )
        return cls(
            distributions={
                n: json_to_distribution(d) for n, d in metadata["distributions"].items()
            },
            metric_names=tuple(metadata["metric_names"]),
            mode=metadata["mode"],
            ensemble_state=state,
            pretraining_set=pretraining_set,
            final_loss=float(metadata["final_loss"]),
        )

    def _check_weights(self) -> None:
        """Build the network once: weights that do not fit their metadata fail on loading.

        Found in the middle of a study instead, a fit would silently start them untrained.
        """
        state = self.ensemble_state
        network = self.ensemble(
            tuple(state["head_names"]), config=self.config, seed=0
        ).network.state_dict()
        misfits = [
            name
            for name, weight in state["weights"].items()
            if name not in network or network[name].shape != weight.shape
        ]
        if misfits:
            raise ValueError(f"weights {misfits[:3]} do not fit the recorded shape")


def _read_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Any]:
    """The JSON metadata and the ensemble state of a surrogate file of this format and version.

    Raises:
        SurrogateFileError: Not a torch file, one that would need pickle, or another format.
    """
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
        metadata = json.loads(payload["metadata"])
        state = payload["ensemble"]
    except Exception as error:
        raise SurrogateFileError(
            f"{path} is not a pretrained surrogate saved by optuna-deepens ({error}). Save "
            "one with PretrainedSurrogate.save, or pretrain again."
        ) from error
    if not isinstance(metadata, dict) or (
        metadata.get("format") != FILE_FORMAT or metadata.get("version") != FILE_VERSION
    ):
        found = metadata if not isinstance(metadata, dict) else metadata.get("format")
        version = metadata.get("version") if isinstance(metadata, dict) else None
        raise SurrogateFileError(
            f"{path} has format {found!r} version {version!r}; this version of "
            f"optuna-deepens reads {FILE_FORMAT!r} version {FILE_VERSION}. Pretrain again."
        )
    return metadata, state


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def pretrain(
    pretraining_set: PretrainingSet,
    *,
    metrics: Sequence[str] | None = None,
    mode: str = "simultaneous",
    n_steps: int = 3000,
    ensemble_config: EnsembleConfig | None = None,
    seed: int = 0,
) -> PretrainedSurrogate:
    """Train a fresh ensemble on the zero-cost metrics of ``pretraining_set``.

    Args:
        pretraining_set: Architectures and their metrics.
        metrics: Metrics to learn, each with its own head; by default all in the set.
        mode: ``"simultaneous"`` (one summed loss over all heads, the thesis's method) or
            ``"sequential"`` (each metric in turn, ``n_steps / len(metrics)`` steps each).
        n_steps: Optimiser steps in total. 3,000 mini-batches of 64 are about 100 epochs of
            2,000 architectures.
        ensemble_config: Shape of the ensemble; the sampler using the result adopts it.
        seed: Seeds initialisation and mini-batches.
    """
    if mode not in PRETRAINING_MODES:
        raise ValueError(f"mode={mode!r}; choose one of {PRETRAINING_MODES}.")
    names = tuple(pretraining_set.metric_names if metrics is None else metrics)
    if not names:
        raise ValueError("Pretraining needs at least one metric.")
    if OBJECTIVE in names:
        raise ValueError(f"{OBJECTIVE!r} is the search objective, not a zero-cost metric.")
    space, unsupported = modelled_space(pretraining_set.distributions)
    if unsupported:
        raise ValueError(
            f"Parameters {unsupported} have distributions the ensemble cannot encode; use "
            "suggest_float, suggest_int or suggest_categorical."
        )
    encoder = SearchSpaceEncoder(space)
    rows = pretraining_set.rows(encoder, names)
    ensemble = DeepEnsemble(
        encoder.n_features, (OBJECTIVE, *names), config=ensemble_config, seed=seed
    )
    if mode == "simultaneous":
        loss = ensemble.fit(rows.features, rows.targets, n_steps)
    else:
        per_metric = max(1, n_steps // len(names))
        for name in names:
            loss = ensemble.fit(rows.features, {name: rows.targets[name]}, per_metric)
    return PretrainedSurrogate(
        distributions=space,
        metric_names=names,
        mode=mode,
        ensemble_state=ensemble.state(),
        pretraining_set=pretraining_set,
        final_loss=float(loss),
    )
