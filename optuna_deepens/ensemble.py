"""The deep-ensemble surrogate: members with a shared trunk and one head per named target.

Thesis Appendix A: every member is a feed-forward network whose shared section (Linear,
LayerNorm, SiLU blocks) produces one embedding, followed by a specialised head (a dense block and
an output) per prediction target. Targets are named (``"objective"`` today; zero-cost metrics and
fidelities are further heads), and each row may lack some targets: the loss of a head only
counts the rows that have its target, so every source of data trains the shared embedding.

All members train in one batched computation: their weights are stacked on a leading member
axis and applied with ``torch.baddbmm``. Members differ by initialisation and by the
mini-batches they draw. Targets are standardised per head and the loss is the Huber loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from optuna_deepens._torch import torch_threads
from optuna_deepens._validation import check_float
from optuna_deepens._validation import check_int
from optuna_deepens._validation import check_optional_int
from optuna_deepens.transforms import Standardizer


@dataclass(frozen=True)
class EnsembleConfig:
    """Shape and training schedule of the ensemble.

    The thesis uses a 64-128-256-256 trunk and 512-wide heads; the smaller default keeps the
    per-trial overhead of a CPU-only study well under a second while fitting NAS data as well.
    """

    n_members: int = 6
    trunk_sizes: tuple[int, ...] = (64, 128, 128)
    head_size: int = 64
    learning_rate: float = 5e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    cold_steps: int = 400
    warm_steps: int = 64
    huber_delta: float = 1.0
    # Intra-op threads while fitting and predicting. The matrices are tiny, so threads buy
    # little, and on a busy machine (several workers, n_jobs > 1) OpenMP threads that wait for
    # each other made one fit 20x slower here. ``None`` keeps torch's setting.
    n_threads: int | None = 1
    # Diversity beyond initialisation and mini-batches, for regions no result covers (a
    # categorical structure never tried): each member adds ``prior_scale`` times a fixed random
    # network to its output, in standardised target units (randomised prior functions, Osband
    # et al. 2018); ``bootstrap`` weights each member's loss on the study's results by its own
    # Poisson(1) resample of them. Both off by default: see benchmarks/README.
    prior_scale: float = 0.0
    bootstrap: bool = False

    def __post_init__(self) -> None:
        owner = "EnsembleConfig"
        check_int(
            owner, "n_members", self.n_members, minimum=2, why="their spread is the uncertainty"
        )
        if isinstance(self.trunk_sizes, (str, bytes)) or not hasattr(self.trunk_sizes, "__iter__"):
            raise TypeError(
                f"{owner}(trunk_sizes={self.trunk_sizes!r}): expected a sequence of layer "
                "widths, e.g. trunk_sizes=(64, 128, 128)."
            )
        sizes = tuple(self.trunk_sizes)
        if not sizes:
            raise ValueError(f"{owner}(trunk_sizes=()): the trunk needs at least one layer.")
        for size in sizes:
            check_int(owner, "trunk_sizes[...]", size, minimum=1)
        object.__setattr__(self, "trunk_sizes", tuple(int(size) for size in sizes))
        check_int(owner, "head_size", self.head_size, minimum=1)
        check_float(owner, "learning_rate", self.learning_rate, positive=True)
        check_float(owner, "weight_decay", self.weight_decay, non_negative=True)
        check_int(owner, "batch_size", self.batch_size, minimum=1)
        check_int(owner, "cold_steps", self.cold_steps, minimum=1)
        check_int(owner, "warm_steps", self.warm_steps, minimum=0)
        check_float(owner, "huber_delta", self.huber_delta, positive=True)
        check_optional_int(owner, "n_threads", self.n_threads, minimum=1)
        check_float(owner, "prior_scale", self.prior_scale, non_negative=True)
        if not isinstance(self.bootstrap, bool):
            raise TypeError(f"{owner}(bootstrap={self.bootstrap!r}): expected True or False.")


class _StackedLinear(torch.nn.Module):
    def __init__(self, n_members: int, n_in: int, n_out: int, generator: torch.Generator) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)  # torch.nn.Linear's default initialisation.
        self.weight = torch.nn.Parameter(
            (torch.rand(n_members, n_in, n_out, generator=generator) * 2 - 1) * bound
        )
        self.bias = torch.nn.Parameter(
            (torch.rand(n_members, 1, n_out, generator=generator) * 2 - 1) * bound
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class _StackedBlock(torch.nn.Module):
    """Linear, LayerNorm and SiLU, one copy per member."""

    def __init__(self, n_members: int, n_in: int, n_out: int, generator: torch.Generator) -> None:
        super().__init__()
        self.linear = _StackedLinear(n_members, n_in, n_out, generator)
        self.norm_weight = torch.nn.Parameter(torch.ones(n_members, 1, n_out))
        self.norm_bias = torch.nn.Parameter(torch.zeros(n_members, 1, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        h = F.layer_norm(h, h.shape[-1:]) * self.norm_weight + self.norm_bias
        return F.silu(h)


class EnsembleNetwork(torch.nn.Module):
    """``n_members`` networks evaluated at once on inputs ``[members, batch, features]``.

    A *conditioned* head also reads one number per row beside the embedding: the training
    step a low-fidelity value was reached at, so one head serves every early-stopped trial.
    """

    def __init__(
        self,
        n_inputs: int,
        head_names: Sequence[str],
        config: EnsembleConfig,
        generator: torch.Generator,
        conditioned: Sequence[str] = (),
    ) -> None:
        super().__init__()
        m = config.n_members
        sizes = (n_inputs, *config.trunk_sizes)
        self.trunk = torch.nn.Sequential(
            *[_StackedBlock(m, a, b, generator) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        self.conditioned = frozenset(conditioned)
        self.heads = torch.nn.ModuleDict(
            {
                name: torch.nn.Sequential(
                    _StackedBlock(
                        m, sizes[-1] + (name in self.conditioned), config.head_size, generator
                    ),
                    _StackedLinear(m, config.head_size, 1, generator),
                )
                for name in head_names
            }
        )
        self.prior_scale = config.prior_scale
        self.prior: torch.nn.Module | None = None
        if self.prior_scale > 0:
            # One output per head. The last layer's N(0, 1/width) weights on SiLU units of
            # unit-variance inputs give outputs of about unit variance (E[silu(z)^2] = 0.354).
            last = _StackedLinear(m, config.head_size, len(self.heads), generator)
            with torch.no_grad():
                last.weight.copy_(
                    torch.randn(last.weight.shape, generator=generator)
                    / math.sqrt(0.354 * config.head_size)
                )
                last.bias.zero_()
            self.prior = torch.nn.Sequential(
                _StackedBlock(m, n_inputs, config.head_size, generator), last
            )
            self.prior.requires_grad_(False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(
        self, x: torch.Tensor, conditions: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Predictions per head, ``[members, batch]``; ``conditions`` are ``[members, batch]``."""
        embedding = self.embed(x)
        prior = None if self.prior is None else self.prior(x) * self.prior_scale
        outputs = {}
        for index, (name, head) in enumerate(self.heads.items()):
            inputs = embedding
            if name in self.conditioned:
                condition = (conditions or {}).get(name)
                if condition is None:
                    condition = torch.zeros(embedding.shape[:-1])
                inputs = torch.cat([embedding, condition.unsqueeze(-1)], dim=-1)
            outputs[name] = head(inputs).squeeze(-1)
            if prior is not None:
                outputs[name] = outputs[name] + prior[..., index]
        return outputs


@dataclass(frozen=True)
class Rows:
    """Training rows: features ``[n, n_inputs]`` and named targets ``[n]`` (``NaN`` = missing)."""

    features: np.ndarray
    targets: Mapping[str, np.ndarray]
    conditions: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class _TensorRows:
    x: torch.Tensor
    y: Mapping[str, torch.Tensor]
    masks: Mapping[str, torch.Tensor]
    conditions: Mapping[str, torch.Tensor]
    # ``[members, n]`` bootstrap counts of the rows (``EnsembleConfig.bootstrap``), or None.
    weights: torch.Tensor | None = None

    def draw(self, n_members: int, batch_size: int, generator: torch.Generator) -> _TensorRows:
        """An independent mini-batch per member, as ``[members, batch, ...]``.

        With bootstrap weights, each member's masks carry its counts of the drawn rows.
        """
        n = self.x.shape[0]
        index = torch.randint(n, (n_members, min(batch_size, n)), generator=generator)
        masks = {k: v[index] for k, v in self.masks.items()}
        if self.weights is not None:
            counts = torch.gather(self.weights, 1, index)
            masks = {k: v * counts for k, v in masks.items()}
        return _TensorRows(
            self.x[index],
            {k: v[index] for k, v in self.y.items()},
            masks,
            {k: v[index] for k, v in self.conditions.items()},
        )


class DeepEnsemble:
    """Fits and queries an :class:`EnsembleNetwork` on numpy data.

    Args:
        n_inputs: Width of the feature vectors.
        head_names: One head per named target.
        config: Shape and schedule.
        seed: Seeds the initialisation and the mini-batch draws.
        conditioned: Heads that also read a per-row condition (see :class:`EnsembleNetwork`).
    """

    def __init__(
        self,
        n_inputs: int,
        head_names: Sequence[str],
        *,
        config: EnsembleConfig | None = None,
        seed: int = 0,
        conditioned: Sequence[str] = (),
    ) -> None:
        self.config = config or EnsembleConfig()
        self.head_names = tuple(head_names)
        self.conditioned = tuple(name for name in self.head_names if name in set(conditioned))
        self.n_inputs = n_inputs
        self._generator = torch.Generator().manual_seed(seed)
        self.network = EnsembleNetwork(
            n_inputs, self.head_names, self.config, self._generator, self.conditioned
        )
        self._optimizer = torch.optim.AdamW(
            [p for p in self.network.parameters() if p.requires_grad],  # Not the priors.
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
            fused=True,  # One kernel per step: the optimiser dominates small networks on CPU.
        )
        self._scalers: dict[str, Standardizer] = {}
        # Row i of the study's results has count ``_counts[m, i]`` in member m's resample, the
        # same at every fit (drawn row by row from a generator of its own, grown as rows come).
        self._counts = torch.zeros(self.config.n_members, 0)
        self._count_generator = torch.Generator().manual_seed(seed + 1)

    def _bootstrap_counts(self, n_rows: int) -> torch.Tensor:
        missing = n_rows - self._counts.shape[1]
        if missing > 0:
            rates = torch.ones(missing, self.config.n_members)
            more = torch.poisson(rates, generator=self._count_generator).T
            self._counts = torch.cat([self._counts, more], dim=1)
        return self._counts[:, :n_rows]

    def fit(
        self,
        features: np.ndarray,
        targets: Mapping[str, np.ndarray],
        n_steps: int,
        *,
        conditions: Mapping[str, np.ndarray] | None = None,
        replay: Sequence[Rows] = (),
        head_weights: Mapping[str, float] | None = None,
    ) -> float:
        """Train ``n_steps`` AdamW steps from the current weights; returns the last loss.

        Args:
            features: ``[n, n_inputs]``.
            targets: Head name to ``[n]`` values, ``NaN`` where a row lacks that target.
            n_steps: Optimiser steps (one mini-batch per member each).
            conditions: Conditioned head name to ``[n]`` conditions of the rows.
            replay: Further sets of rows, each drawn in a batch of its own at every step, so
                that a large set (thousands of pretraining architectures, a related study's
                results) keeps its heads trained without crowding the few rows of the
                objective out of the mini-batches.
            head_weights: Weight of each head's loss (default 1), for instance to make
                full-fidelity results count more than early-stopped ones.
        """
        main = Rows(features, dict(targets), dict(conditions or {}))
        parts = [main, *replay]
        names = set().union(*(part.targets for part in parts))
        unknown = names - set(self.head_names)
        if unknown:
            raise ValueError(f"No head for targets {sorted(unknown)}; heads: {self.head_names}.")
        if features.shape[0] == 0:
            raise ValueError("Cannot fit the ensemble on zero rows.")
        for name in names:
            values = np.concatenate([p.targets[name] for p in parts if name in p.targets])
            self._scalers[name] = Standardizer.fit(values)
        tensors = [self._to_tensors(part, sorted(names)) for part in parts if part.n_rows]
        if self.config.bootstrap:  # The study's own results only: replayed sets are large.
            tensors[0] = dataclasses.replace(
                tensors[0], weights=self._bootstrap_counts(main.n_rows)
            )
        weights = {name: float((head_weights or {}).get(name, 1.0)) for name in names}
        with torch_threads(self.config.n_threads):
            return self._train(tensors, n_steps, weights)

    def _to_tensors(self, rows: Rows, names: Sequence[str]) -> _TensorRows:
        x = torch.as_tensor(rows.features, dtype=torch.float32)
        y, masks = {}, {}
        for name in names:
            values = rows.targets.get(name, np.full(rows.n_rows, np.nan))
            scaler = self._scalers[name]
            finite = np.isfinite(values)
            standardized = np.where(finite, scaler(values), 0.0)
            y[name] = torch.as_tensor(standardized, dtype=torch.float32)
            masks[name] = torch.as_tensor(finite, dtype=torch.float32)
        conditions = {
            name: torch.as_tensor(
                rows.conditions.get(name, np.zeros(rows.n_rows)), dtype=torch.float32
            )
            for name in self.conditioned
        }
        return _TensorRows(x, y, masks, conditions)

    def _train(
        self, parts: Sequence[_TensorRows], n_steps: int, weights: Mapping[str, float]
    ) -> float:
        m = self.config.n_members
        self.network.train()
        loss_value = math.nan
        for _ in range(n_steps):
            batches = [part.draw(m, self.config.batch_size, self._generator) for part in parts]
            x = torch.cat([b.x for b in batches], dim=1)
            conditions = {
                name: torch.cat([b.conditions[name] for b in batches], dim=1)
                for name in self.conditioned
            }
            predictions = self.network(x, conditions)
            loss = torch.zeros(())
            for name, prediction in predictions.items():
                if name not in batches[0].y:
                    continue
                target = torch.cat([b.y[name] for b in batches], dim=1)
                mask = torch.cat([b.masks[name] for b in batches], dim=1)
                per_row = F.huber_loss(
                    prediction, target, reduction="none", delta=self.config.huber_delta
                )
                mean = (per_row * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
                loss = loss + weights[name] * mean.sum()
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
            loss_value = float(loss.detach()) / m
        return loss_value

    def state(self) -> dict[str, Any]:
        """Weights, target scales and shape as plain containers of tensors and numbers.

        The result loads with ``torch.load(weights_only=True)``: no pickled objects.
        """
        return {
            "n_inputs": self.n_inputs,
            "head_names": list(self.head_names),
            "conditioned": list(self.conditioned),
            "config": dataclasses.asdict(self.config),
            "scalers": {name: [s.mean, s.std] for name, s in self._scalers.items()},
            "weights": {k: v.detach().clone() for k, v in self.network.state_dict().items()},
        }

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        head_names: Sequence[str] | None = None,
        config: EnsembleConfig | None = None,
        seed: int = 0,
        conditioned: Sequence[str] | None = None,
    ) -> DeepEnsemble:
        """An ensemble starting from saved weights, with fresh optimiser state.

        Args:
            state: What :meth:`state` returned.
            head_names: Heads wanted now. Saved heads are loaded, others start untrained (a
                target the saved ensemble never saw), and saved heads not asked for are dropped.
            config: Training schedule for further fits; its shape must equal the saved one.
            seed: Seeds new heads and mini-batch draws.
            conditioned: Conditioned heads; by default the saved ones. A head whose
                conditioning changed starts untrained.
        """
        saved = EnsembleConfig(
            **{**state["config"], "trunk_sizes": tuple(state["config"]["trunk_sizes"])}
        )
        config = config or saved
        if (config.n_members, config.trunk_sizes, config.head_size) != (
            saved.n_members,
            saved.trunk_sizes,
            saved.head_size,
        ):
            raise ValueError(
                "The saved ensemble has n_members, trunk_sizes and head_size "
                f"{(saved.n_members, saved.trunk_sizes, saved.head_size)}; the configuration "
                "asks for "
                f"{(config.n_members, config.trunk_sizes, config.head_size)}. Use the saved shape."
            )
        names = tuple(head_names) if head_names is not None else tuple(state["head_names"])
        if conditioned is None:
            conditioned = state.get("conditioned", ())
        ensemble = cls(
            int(state["n_inputs"]), names, config=config, seed=seed, conditioned=conditioned
        )
        wanted = ensemble.network.state_dict()
        weights = {
            k: v for k, v in state["weights"].items() if k in wanted and wanted[k].shape == v.shape
        }
        ensemble.network.load_state_dict(weights, strict=False)
        ensemble._scalers = {
            name: Standardizer(float(mean), float(std))
            for name, (mean, std) in state["scalers"].items()
            if name in names
        }
        return ensemble

    @torch.no_grad()
    def predict(
        self, features: np.ndarray, head: str, *, condition: float | None = None
    ) -> np.ndarray:
        """Each member's prediction of ``head`` in target units, shape ``[n_members, n]``.

        ``condition`` is the condition of every row, for a conditioned head.
        """
        self.network.eval()
        m = self.config.n_members
        x = torch.as_tensor(features, dtype=torch.float32).unsqueeze(0).expand(m, -1, -1)
        conditions = {}
        if head in self.conditioned:
            conditions[head] = torch.full(x.shape[:-1], float(condition or 0.0))
        with torch_threads(self.config.n_threads):
            standardized = self.network(x, conditions)[head].numpy().astype(float)
        return self._scalers.get(head, Standardizer()).inverse(standardized)
