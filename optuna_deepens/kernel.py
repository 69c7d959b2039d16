"""A Gaussian process over the encoded parameters (numbers, one-hot choices, and with short runs
the fidelity): posterior draws that revert to the prior away from the data.

The deep ensemble is confidently wrong far from its results (issue 18, LCBench task 126025: at
trials 15-45 every member put the best corner of the space at -0.7..0.5 on the copula scale
while the incumbent's region sat at 1.3-2.3), where a GP's posterior goes back to its mean and
its spread grows. On the encoded features (numbers scaled to [0, 1], one-hot choices, activity
bits) a Matern-5/2 GP with one length scale per column gives that behaviour. Its kernel
parameters maximise the marginal likelihood under the priors of Optuna's ``GPSampler``
(``optuna._gp.prior``). It is written here in a few lines of torch, not imported: Optuna's GP
is a private module and needs SciPy, which is not a dependency of this package.

:meth:`KernelSurrogate.predict` returns *posterior draws*, not a mean: the rest of the sampler
reads an ensemble's members (one for Thompson sampling, their spread for PI and EI, "every
member agrees" for the structure rule), and a draw of a GP is a member in exactly that sense.
Draws are pathwise (Wilson et al., 2020, "Efficiently sampling functions from Gaussian process
posteriors"): a prior draw from random Fourier features plus the exact kernel update, so one
draw scores the same row the same way at every call, as the local climb requires.
:meth:`KernelSurrogate.moments` gives the exact posterior mean and spread, which PI, EI and
UCB read instead of the draws' sample statistics (the sampler's default with the kernel is
log EI on them, as ``GPSampler``'s).
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

import numpy as np
import torch

from optuna_deepens._torch import torch_threads

# Fourier features of each prior draw: the prior's error is O(1/sqrt(n)) of its spread.
_N_FOURIER = 512
# Matern-5/2: the spectral density is a Student t with 2 * 5/2 degrees of freedom.
_NU = 5.0
_MIN_NOISE = 1e-6
_FIT_ITERATIONS = 100
_CHUNK = 1024  # Rows per prediction batch: bounds the [draws, rows, features] cosines.
# Pairwise differences up to this many elements (about 128 MB, 1,000 x 1,000 rows of 16
# columns); beyond, the expanded square, which is linear in the rows but rounds differently.
_DIRECT_ELEMENTS = 2**24


class _Matern52(torch.autograd.Function):
    """``k(r2) = (1 + s + s^2 / 3) exp(-s)`` with ``s = sqrt(5 r2)``, differentiated in ``r2``:
    autograd through ``sqrt`` gives ``inf * 0`` at ``r2 = 0`` (the diagonal)."""

    @staticmethod
    def forward(ctx: Any, squared: torch.Tensor) -> torch.Tensor:
        s = torch.sqrt(5.0 * squared)
        decay = torch.exp(-s)
        ctx.save_for_backward(-5.0 / 6.0 * (1.0 + s) * decay)
        return (1.0 + s + s * s / 3.0) * decay

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (derivative,) = ctx.saved_tensors
        return grad * derivative


@dataclass(frozen=True)
class KernelParams:
    """Inverse squared length scale per column, the kernel's variance and the noise variance."""

    inverse_lengths2: torch.Tensor
    scale: torch.Tensor
    noise: torch.Tensor

    def covariance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if len(a) * len(b) * a.shape[1] <= _DIRECT_ELEMENTS:
            squared = ((a[:, None, :] - b[None, :, :]) ** 2) @ self.inverse_lengths2
        else:  # No [rows, rows, columns] tensor: 1 GB at 2,000 short runs of 31 columns.
            root = torch.sqrt(self.inverse_lengths2)
            a, b = a * root, b * root
            cross = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
            squared = torch.clamp(cross, min=0.0)
        return self.scale * _Matern52.apply(squared)


def _log_prior(params: KernelParams) -> torch.Tensor:
    """``GPSampler``'s priors: length scales kept away from 0 and infinity, Gamma(2, 1) on the
    variance, Gamma(1.1, 30) on the noise (constants dropped)."""
    lengths = -(0.1 / params.inverse_lengths2 + 0.1 * params.inverse_lengths2).sum()
    scale = torch.log(params.scale) - params.scale
    noise = 0.1 * torch.log(params.noise) - 30.0 * params.noise
    return lengths + scale + noise


def _unpack(raw: torch.Tensor) -> KernelParams:
    return KernelParams(torch.exp(raw[:-2]), torch.exp(raw[-2]), torch.exp(raw[-1]) + _MIN_NOISE)


def fit_kernel(x: torch.Tensor, y: torch.Tensor, start: KernelParams | None) -> KernelParams:
    """Maximum a posteriori kernel parameters (L-BFGS from ``start`` or from all ones)."""
    d = x.shape[1]
    if start is not None and len(start.inverse_lengths2) == d:
        initial = torch.cat(
            [
                torch.log(start.inverse_lengths2),
                torch.log(start.scale)[None],
                torch.log(torch.clamp(start.noise - 0.99 * _MIN_NOISE, min=1e-12))[None],
            ]
        )
    else:
        initial = torch.zeros(d + 2, dtype=torch.float64)
    raw = initial.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        [raw], max_iter=_FIT_ITERATIONS, line_search_fn="strong_wolfe", tolerance_grad=1e-4
    )
    eye = torch.eye(len(y), dtype=torch.float64)

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        params = _unpack(raw)
        covariance = params.covariance(x, x) + params.noise * eye
        cholesky, info = torch.linalg.cholesky_ex(covariance)
        if info:
            value = torch.tensor(1e10, dtype=torch.float64, requires_grad=True)
        else:
            solved = torch.linalg.solve_triangular(cholesky, y[:, None], upper=False)[:, 0]
            log_likelihood = -torch.log(cholesky.diagonal()).sum() - 0.5 * solved @ solved
            value = -(log_likelihood + _log_prior(params))
        value.backward()
        return value

    try:
        optimiser.step(loss)
    except RuntimeError:  # A step to a singular covariance: keep the start.
        raw = initial
    fitted = raw.detach()
    if not torch.isfinite(fitted).all():
        fitted = initial
    return _unpack(fitted)


class KernelSurrogate:
    """A GP fitted to one target, with ``n_draws`` fixed posterior draws.

    Args:
        features: ``[n, n_features]`` encoded training rows.
        targets: ``[n]`` (maximisation convention, any scale; standardised here). ``NaN``
            rows are left out.
        n_draws: Posterior draws :meth:`predict` returns (the "members").
        seed: Fixes the draws.
        start: Kernel parameters of the previous fit, to start the optimisation from.
    """

    def __init__(
        self,
        features: np.ndarray,
        targets: np.ndarray,
        *,
        n_draws: int,
        seed: int,
        start: KernelParams | None = None,
        n_threads: int = 1,
    ) -> None:
        finite = np.isfinite(targets)
        x = np.asarray(features, dtype=np.float64)[finite]
        y = np.asarray(targets, dtype=np.float64)[finite]
        # Constant columns (an always-active parameter's activity bit) carry nothing.
        self._columns = np.flatnonzero(x.max(axis=0) > x.min(axis=0))
        self._mean, self._scale = float(y.mean()), float(y.std()) or 1.0
        self._n_threads = n_threads
        self._x = torch.from_numpy(x[:, self._columns])
        standard = torch.from_numpy((y - self._mean) / self._scale)
        generator = torch.Generator().manual_seed(seed)
        with torch_threads(n_threads):
            self.params = fit_kernel(self._x, standard, start)
            self._draw_priors(n_draws, generator)
            self._cholesky = self._factor()
            # (K + noise I)^-1 y: the posterior mean's weights, for the exact moments.
            self._mean_weights = torch.cholesky_solve(standard[:, None], self._cholesky)[:, 0]
            self._alpha = self._condition(standard, generator)

    def _draw_priors(self, n_draws: int, generator: torch.Generator) -> None:
        """Random Fourier features of ``n_draws`` prior functions."""
        shape = (n_draws, _N_FOURIER, self._x.shape[1])
        gaussian = torch.randn(shape, generator=generator, dtype=torch.float64)
        # Chi-squared(nu) as a sum of nu squared normals (nu = 5): the Student t's scale.
        chi2 = (
            torch.randn((*shape[:2], int(_NU)), generator=generator, dtype=torch.float64) ** 2
        ).sum(-1, keepdim=True)
        self._frequencies = gaussian * self.params.inverse_lengths2.sqrt() / torch.sqrt(chi2 / _NU)
        self._phases = (
            2 * math.pi * torch.rand(shape[:2], generator=generator, dtype=torch.float64)
        )
        weights = torch.randn(shape[:2], generator=generator, dtype=torch.float64)
        self._weights = weights * torch.sqrt(2.0 * self.params.scale / _N_FOURIER)

    def _factor(self) -> torch.Tensor:
        """The Cholesky factor of ``K + noise I`` at the results, which the draws' update and
        the exact moments share."""
        params = self.params
        covariance = params.covariance(self._x, self._x)
        covariance.diagonal().add_(params.noise)
        cholesky, info = torch.linalg.cholesky_ex(covariance)
        jitter = 1e-8
        while info and jitter < 1.0:  # Rounding in a near-singular matrix: the noise grows.
            covariance.diagonal().add_(jitter)
            cholesky, info = torch.linalg.cholesky_ex(covariance)
            jitter *= 10.0
        return cholesky

    def _condition(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(K + noise I)^-1 (y - f_prior(X) - eps)`` per draw: the pathwise update."""
        draws = self._weights.shape[0]
        noise = torch.randn((draws, len(y)), generator=generator, dtype=torch.float64)
        residual = y - self._prior(self._x) - noise * self.params.noise.sqrt()
        return torch.cholesky_solve(residual.T, self._cholesky).T  # [draws, n]

    def _prior(self, x: torch.Tensor) -> torch.Tensor:
        """Each draw's prior function at ``x``: ``[draws, n]``."""
        angles = torch.einsum("nd,mfd->mnf", x, self._frequencies) + self._phases[:, None, :]
        return torch.einsum("mnf,mf->mn", torch.cos(angles), self._weights)

    @torch.no_grad()
    def predict(self, features: np.ndarray) -> np.ndarray:
        """Each draw at ``features`` in target units, ``[n_draws, n]``."""
        x = torch.from_numpy(np.asarray(features, dtype=np.float64))
        parts = []
        with torch_threads(self._n_threads):
            for chunk in torch.split(x, _CHUNK):
                parts.append(self._draws(chunk))
        draws = torch.cat(parts, dim=1) if parts else torch.zeros((len(self._alpha), 0))
        return draws.numpy()

    @torch.no_grad()
    def moments(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exact posterior mean and standard deviation of the objective (not of a noisy
        observation) at ``features``, in target units: what PI, EI and UCB read."""
        x = torch.from_numpy(np.asarray(features, dtype=np.float64))
        with torch_threads(self._n_threads):
            parts = [self._posterior(chunk) for chunk in torch.split(x, _CHUNK)]
        if not parts:
            return np.zeros(0), np.zeros(0)
        mean, std = (torch.cat(p).numpy() for p in zip(*parts))
        return mean, std

    def moments_tensor(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`moments` of a float64 tensor, differentiable in ``features`` (call it under
        :func:`torch_threads`): what the gradient polish of the numbers reads."""
        return self._posterior(features)

    def _draws(self, features: torch.Tensor) -> torch.Tensor:
        x = features[:, self._columns]
        cross = self.params.covariance(x, self._x)
        return (self._prior(x) + self._alpha @ cross.T) * self._scale + self._mean

    def _posterior(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = features[:, self._columns]
        cross = self.params.covariance(x, self._x)  # [n, train]
        mean = cross @ self._mean_weights
        solved = torch.linalg.solve_triangular(self._cholesky, cross.T, upper=False)
        variance = torch.clamp(self.params.scale - (solved**2).sum(0), min=1e-12)
        return mean * self._scale + self._mean, torch.sqrt(variance) * self._scale


class KernelAtFidelity:
    """A kernel fitted with the fidelity as its last input column, read at one fidelity.

    One GP over short and full trainings: short runs inform full results as far as the fitted
    length scale of the fidelity column says they agree (the role of the ensemble's shared
    trunk in multi-fidelity studies). Same interface as :class:`KernelSurrogate`.
    """

    def __init__(self, model: KernelSurrogate, fidelity: float) -> None:
        self.model = model
        self.fidelity = fidelity

    def _at(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        return np.concatenate([features, np.full((len(features), 1), self.fidelity)], axis=1)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Each draw at ``features`` and this fidelity, ``[n_draws, n]``."""
        return self.model.predict(self._at(features))

    def moments(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exact posterior mean and standard deviation at this fidelity."""
        return self.model.moments(self._at(features))

    def moments_tensor(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`KernelSurrogate.moments_tensor` at this fidelity."""
        fidelity = torch.full((len(features), 1), self.fidelity, dtype=features.dtype)
        return self.model.moments_tensor(torch.cat([features, fidelity], dim=1))
