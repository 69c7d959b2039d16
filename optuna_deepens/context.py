"""What one proposal knows: the study as this trial sees it, in the encoder's terms.

Built once per ``sample_relative`` call and handed to every step of the pipeline, so that no
step reads storage or re-derives the trial's randomness on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial

from optuna_deepens import coordination
from optuna_deepens.coordination import Pattern
from optuna_deepens.coordination import PatternCache
from optuna_deepens.coordination import TakenArchitectures
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.training_data import Objectives


def derive_seed(*parts: int) -> int:
    """A seed for one use (a trial, a fit, a parameter): every random choice is replayable."""
    return int(np.random.SeedSequence([p % 2**32 for p in parts]).generate_state(1)[0])


@dataclass(frozen=True)
class ProposalContext:
    """One trial's proposal: its snapshot of the study, randomness and constraints.

    Attributes:
        study: The study, for fresh reads and writes at claim time.
        trial: The trial being sampled.
        encoder: The union search space, as model features and internal rows.
        trials: Every *other* trial of the snapshot, running ones included.
        rng: Seeded by ``(sampler seed, trial number)``: a resumed study replays nothing.
        level: The trial's fidelity level (``None`` in a mono-fidelity study).
        taken: Architectures other trials hold, which no candidate may repeat.
        pinned: ``(column, value)`` fixed by ``enqueue_trial``: the objective gets these.
        cache: Patterns of finished trials, kept between proposals.
        reuse_pruned: Whether architectures only pruned at low fidelity are free again.
        objectives: The study's objectives, metric objectives and metric bounds.
    """

    study: Study
    trial: FrozenTrial
    encoder: SearchSpaceEncoder
    trials: Sequence[FrozenTrial]
    rng: np.random.Generator
    level: str | None
    taken: TakenArchitectures
    pinned: Pattern
    cache: PatternCache
    reuse_pruned: bool
    objectives: Objectives

    @classmethod
    def create(
        cls,
        study: Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
        *,
        seed: int,
        level: str | None,
        reuse_pruned: bool,
        cache: PatternCache,
        objectives: Objectives,
    ) -> ProposalContext:
        encoder = SearchSpaceEncoder(search_space)
        others = [t for t in coordination.snapshot(study) if t.number != trial.number]
        taken = coordination.taken_architectures(
            encoder, others, cache=cache, reuse_pruned=reuse_pruned
        )
        pinned = coordination.params_pattern(encoder, coordination.fixed_params(trial))
        return cls(
            study=study,
            trial=trial,
            encoder=encoder,
            trials=others,
            rng=np.random.default_rng(derive_seed(seed, trial.number)),
            level=level,
            taken=taken,
            pinned=pinned or (),
            cache=cache,
            reuse_pruned=reuse_pruned,
            objectives=objectives,
        )

    @property
    def number(self) -> int:
        return self.trial.number
