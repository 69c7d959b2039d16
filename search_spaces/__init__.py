"""Vision search spaces written as Optuna ``suggest_*`` calls that build plain PyTorch models.

Every family module exposes ``suggest(trial) -> config`` (only ``suggest_*`` calls, no model
built), ``build(config, *, num_classes, ...) -> torch.nn.Module`` and ``REFERENCES``, a dict of
named configs of the published models it contains. ``SPACES`` maps family names to the modules
that are importable; a module still missing is simply left out.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from search_spaces.blocks import reparameterize

_FAMILIES = ("mobileone", "swiftformer", "attention", "moat", "nasbench201")


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise  # A missing dependency inside an existing module is a real error.
        return None


SPACES: dict[str, ModuleType] = {
    name: module for name in _FAMILIES if (module := _load(name)) is not None
}

__all__ = ["SPACES", "reparameterize"]
