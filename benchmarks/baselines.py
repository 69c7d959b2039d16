"""Two NAS baselines as Optuna samplers: local search and regularised evolution.

Both work on a fixed space of categorical parameters (NAS-Bench-201's six edges,
NAS-Bench-Graph's link pattern and four operations) given at construction, and both treat one
assignment of all parameters as one architecture:

* **No architecture is evaluated twice.** Every proposal is checked against all trials in the
  study (finished, failed, pruned or running), since on a tabular benchmark a repeat is a
  wasted evaluation that a real search would never pay for. Where several assignments are the
  same network (NAS-Bench-Graph's isomorphic cells), an ``architecture_id`` function given at
  construction names the network, and an assignment whose network was visited counts as
  visited; by default each assignment is its own architecture.
* **All state is replayed from the study's trials.** The samplers keep nothing between calls,
  so a study re-opened in another process continues the same search, and random choices are
  seeded by ``(seed, trial.number)`` so a run is reproducible.

The baselines follow the NASZilla implementations that produced the thesis's comparison
numbers (White et al. 2021, "Local search is state of the art for NAS benchmarks";
Real et al. 2019, "Regularized evolution"), with the 1-edit neighbourhood of NAS-Bench-201.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import itertools
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.samplers import RandomSampler
from optuna.study import Study
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

Key = tuple[int, ...]  # Choice index per parameter, in the order of the space's names.
# Names the network an assignment of the space's parameters builds (isomorphic ones alike).
ArchitectureId = Callable[[Mapping[str, Any]], Hashable]


class _ArchitectureSampler(BaseSampler):
    """Shared plumbing: the fixed categorical space, keys, neighbours and the visited set."""

    def __init__(
        self,
        search_space: dict[str, CategoricalDistribution],
        seed: int | None,
        architecture_id: ArchitectureId | None = None,
    ) -> None:
        if not search_space or not all(
            isinstance(d, CategoricalDistribution) for d in search_space.values()
        ):
            raise ValueError("The search space must be a non-empty dict of categoricals.")
        self._space = dict(search_space)
        self._names = tuple(self._space)
        self._sizes = tuple(len(d.choices) for d in self._space.values())
        self._seed = int(np.random.SeedSequence(seed).entropy % 2**32)
        self._independent = RandomSampler(seed=self._seed)
        self._architecture_id = architecture_id
        self._ids: dict[Key, Hashable] = {}

    # ----------------------------------------------------------------- BaseSampler interface
    def reseed_rng(self) -> None:
        self._seed = int(np.random.SeedSequence().entropy % 2**32)
        self._independent.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        history = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        rng = np.random.default_rng([self._seed, trial.number])
        key = self._propose(history, study.direction, rng)
        if key is None:
            return {}  # Every architecture was visited: let the independent sampler decide.
        return self._params(key)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def _propose(
        self, history: Sequence[FrozenTrial], direction: StudyDirection, rng: np.random.Generator
    ) -> Key | None:
        raise NotImplementedError

    # --------------------------------------------------------------------------- helpers
    def _key(self, trial: FrozenTrial) -> Key | None:
        """The trial's architecture, or None if it lacks one of the space's parameters."""
        try:
            return tuple(
                self._space[name].to_internal_repr(trial.params[name]) for name in self._names
            )
        except (KeyError, ValueError):
            return None

    def _id(self, key: Key) -> Hashable:
        """The architecture ``key`` builds: the key itself unless ``architecture_id`` is set."""
        if self._architecture_id is None:
            return key
        if key not in self._ids:
            self._ids[key] = self._architecture_id(self._params(key))
        return self._ids[key]

    def _params(self, key: Key) -> dict[str, Any]:
        return {
            name: self._space[name].choices[i] for name, i in zip(self._names, key, strict=True)
        }

    def _visited(self, history: Iterable[FrozenTrial]) -> set[Hashable]:
        """The architectures (``_id``) of every trial so far."""
        return {self._id(k) for k in map(self._key, history) if k is not None}

    def _scores(
        self, history: Iterable[FrozenTrial], direction: StudyDirection
    ) -> list[tuple[Key, float]]:
        """(architecture, score) of each COMPLETE trial in order; higher score is better."""
        sign = 1.0 if direction == StudyDirection.MAXIMIZE else -1.0
        out = []
        for t in history:
            key = self._key(t)
            if t.state == TrialState.COMPLETE and key is not None and t.value is not None:
                out.append((key, sign * t.value))
        return out

    def _neighbours(self, key: Key) -> list[Key]:
        """All architectures one edit away: one parameter moved to another choice."""
        out = []
        for j, size in enumerate(self._sizes):
            for choice in range(size):
                if choice != key[j]:
                    out.append(key[:j] + (choice,) + key[j + 1 :])
        return out

    def _random_unvisited(self, visited: set[Hashable], rng: np.random.Generator) -> Key | None:
        """A uniform draw among unvisited assignments (rejection, then enumeration)."""
        for _ in range(64):
            key = tuple(int(rng.integers(size)) for size in self._sizes)
            if self._id(key) not in visited:
                return key
        remaining = [
            k for k in itertools.product(*map(range, self._sizes)) if self._id(k) not in visited
        ]
        if not remaining:
            return None
        return remaining[int(rng.integers(len(remaining)))]

    def _random_unvisited_neighbour(
        self, key: Key, visited: set[Hashable], rng: np.random.Generator
    ) -> Key | None:
        options = [k for k in self._neighbours(key) if self._id(k) not in visited]
        return options[int(rng.integers(len(options)))] if options else None


@dataclass
class _Climb:
    """Where local search stands after replaying the history."""

    center: Key | None = None  # None while sampling the initial architectures of a restart.
    center_score: float = -np.inf
    n_initial_seen: int = 0
    initial: list[tuple[Key, float]] | None = None


class LocalSearchSampler(_ArchitectureSampler):
    """NAS local search (White et al. 2021), with random restarts at local optima.

    1. Evaluate ``n_initial`` random unvisited architectures; the best becomes the centre.
    2. Evaluate the centre's unvisited 1-edit neighbours in random order. With
       ``first_improvement=True`` (NASZilla's default) move to the first neighbour that beats
       the centre; otherwise evaluate the whole neighbourhood and move to its best if it beats
       the centre.
    3. When every neighbour has been visited and none beats the centre, the centre is a local
       optimum: restart at step 1.

    Neighbours visited earlier (in another climb) are not re-evaluated; their known values
    still count when deciding whether the centre is a local optimum.

    Args:
        search_space: The categorical parameters that make up an architecture.
        seed: Seed for the random starts and the neighbour order.
        n_initial: Random architectures evaluated at each (re)start.
        first_improvement: Move at the first improving neighbour instead of after all of them.
        architecture_id: Names the network of an assignment, for spaces where several
            assignments build the same one; a neighbour whose network was evaluated is not
            evaluated again, and its known value counts.
    """

    def __init__(
        self,
        search_space: dict[str, CategoricalDistribution],
        *,
        seed: int | None = None,
        n_initial: int = 10,
        first_improvement: bool = True,
        architecture_id: ArchitectureId | None = None,
    ) -> None:
        super().__init__(search_space, seed, architecture_id)
        if n_initial < 1:
            raise ValueError("n_initial must be at least 1.")
        self._n_initial = n_initial
        self._first_improvement = first_improvement

    def _propose(
        self, history: Sequence[FrozenTrial], direction: StudyDirection, rng: np.random.Generator
    ) -> Key | None:
        climb = self._replay(history, direction)
        visited = self._visited(history)
        if climb.center is None:
            return self._random_unvisited(visited, rng)
        return self._random_unvisited_neighbour(climb.center, visited, rng)

    def _replay(self, history: Sequence[FrozenTrial], direction: StudyDirection) -> _Climb:
        """Re-run the state machine over the finished trials, in the order they were asked."""
        scores = {self._id(key): score for key, score in self._scores(history, direction)}
        climb = _Climb(initial=[])
        visited: set[Hashable] = set()
        for trial in sorted(history, key=lambda t: t.number):
            key = self._key(trial)
            if key is None:
                continue
            self._advance(climb, visited, scores)
            visited.add(self._id(key))
            self._observe(climb, key, scores.get(self._id(key), -np.inf))
        self._advance(climb, visited, scores)
        return climb

    def _advance(
        self, climb: _Climb, visited: set[Hashable], scores: dict[Hashable, float]
    ) -> None:
        """Transitions taken before the next proposal: start climbing, move, or restart.

        ``visited`` and ``scores`` are keyed by architecture (``_id``), not by assignment.
        """
        assert climb.initial is not None
        if climb.center is None:
            if climb.n_initial_seen >= self._n_initial and climb.initial:
                key, score = max(climb.initial, key=lambda ks: ks[1])
                climb.center, climb.center_score = key, score
            else:
                return
        neighbours = self._neighbours(climb.center)
        while all(self._id(k) in visited for k in neighbours):
            known = [(k, scores[self._id(k)]) for k in neighbours if self._id(k) in scores]
            best = max(known, key=lambda ks: ks[1], default=None)
            if best is None or best[1] <= climb.center_score:
                climb.center, climb.center_score = None, -np.inf  # Local optimum: restart.
                climb.n_initial_seen, climb.initial = 0, []
                return
            climb.center, climb.center_score = best
            neighbours = self._neighbours(climb.center)

    def _observe(self, climb: _Climb, key: Key, score: float) -> None:
        assert climb.initial is not None
        if climb.center is None:
            climb.n_initial_seen += 1
            if np.isfinite(score):
                climb.initial.append((key, score))
        elif self._first_improvement and score > climb.center_score:
            climb.center, climb.center_score = key, score


class RegularizedEvolutionSampler(_ArchitectureSampler):
    """Regularised (aging) evolution (Real et al. 2019) with 1-edit mutations.

    The first ``n_initial`` architectures are random. After that, each trial draws
    ``tournament_size`` members of the population (with replacement, as in the paper and
    NASZilla), takes the best as parent and evaluates a random unvisited 1-edit neighbour of it.
    The population is the last ``population_size`` finished trials: the oldest dies whatever
    its accuracy (aging), which keeps the search from settling on one lucky architecture.

    Args:
        search_space: The categorical parameters that make up an architecture.
        seed: Seed for the tournaments, mutations and random starts.
        population_size: Trials alive at once.
        tournament_size: Members drawn to pick each parent.
        n_initial: Random architectures before evolution starts (NASZilla uses 10 and lets the
            population grow to its full size).
        architecture_id: Names the network of an assignment, for spaces where several
            assignments build the same one; a child whose network was evaluated is not
            evaluated again.
    """

    def __init__(
        self,
        search_space: dict[str, CategoricalDistribution],
        *,
        seed: int | None = None,
        population_size: int = 50,
        tournament_size: int = 10,
        n_initial: int = 10,
        architecture_id: ArchitectureId | None = None,
    ) -> None:
        super().__init__(search_space, seed, architecture_id)
        if min(population_size, tournament_size, n_initial) < 1:
            raise ValueError("population_size, tournament_size and n_initial must be positive.")
        self._population_size = population_size
        self._tournament_size = tournament_size
        self._n_initial = n_initial

    def _propose(
        self, history: Sequence[FrozenTrial], direction: StudyDirection, rng: np.random.Generator
    ) -> Key | None:
        visited = self._visited(history)
        finished = self._scores(sorted(history, key=lambda t: t.number), direction)
        if len(finished) < self._n_initial:
            return self._random_unvisited(visited, rng)
        population = finished[-self._population_size :]
        drawn = rng.integers(len(population), size=self._tournament_size)
        # Parents in tournament order, best first; a parent whose neighbours were all visited
        # passes the turn to the next one rather than repeating an architecture.
        for index in sorted(set(drawn.tolist()), key=lambda i: -population[i][1]):
            child = self._random_unvisited_neighbour(population[index][0], visited, rng)
            if child is not None:
                return child
        return self._random_unvisited(visited, rng)
