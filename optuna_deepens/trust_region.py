"""A trust region in edit distance around the incumbent, for mono-fidelity searches.

A deep ensemble ranks a NAS space well on the whole (Spearman 0.77 over all 15,625 NAS-Bench-201
cells after 60 evaluations) yet can rank the optimum itself in the thousands until one of its
neighbours has been evaluated: on CIFAR-100 one pretrained run held a top-30 cell for 120 trials
while the model put the optimum, one edit away, about 1,000th. Local search, which only ever
looks next to its incumbent, does not have that blind spot, but it has no model to order the
neighbours and gets stuck in local optima.

The trust region combines the two, as CASMOPOLITAN (Wan et al., ICML 2021) does for categorical
Bayesian optimisation: candidates are edits of the incumbent within a radius, and the
acquisition orders them. The radius starts at ``max_radius`` edits and shrinks by one edit after
every ``patience`` trials without improvement; once it would reach zero the search is global
again (the sampler's usual candidates) until the incumbent improves, which resets the radius.
Everything is derived from the order of the finished trials, so a resumed study or several
workers agree on the radius without extra state.

It is an option, not the default: over 20 seeds of NAS-Bench-201 it cut the plain sampler's
cost on ImageNet16-120 but raised it on CIFAR-10 and CIFAR-100, and it did not help a pretrained
ensemble (benchmarks/README.md, methods ``deepens-tr`` and ``deepens-pretrain-tr``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optuna_deepens._validation import check_int


@dataclass(frozen=True)
class TrustRegion:
    """Edit-distance trust region around the best trial.

    Args:
        max_radius: Edits (changed parameters) allowed from the incumbent after it improved.
        patience: Trials without improvement before the radius shrinks by one edit.
    """

    max_radius: int = 3
    patience: int = 10

    def __post_init__(self) -> None:
        check_int("TrustRegion", "max_radius", self.max_radius, minimum=1, why="edits")
        check_int("TrustRegion", "patience", self.patience, minimum=1, why="trials")

    def radius(self, values_in_order: np.ndarray) -> int:
        """Edits allowed now, from the model-scale values of the finished trials in order.

        ``0`` means no trust region: search the whole space.

        Args:
            values_in_order: Objective values (larger is better) of the COMPLETE trials, in
                the order they were created.
        """
        finite = np.asarray(values_in_order, dtype=float)
        finite = finite[np.isfinite(finite)]
        if len(finite) == 0:
            return 0
        # The first occurrence of the best value: a tie is no improvement.
        failures = len(finite) - 1 - int(np.argmax(finite))
        return max(0, self.max_radius - failures // self.patience)
