"""An architecture found by a search, as a JSON file that rebuilds it, and optionally as ONNX.

The file records the search space's name, the trial's parameters and the ``build`` options;
:func:`load_architecture` replays the parameters through the space's ``suggest`` with Optuna's
``FixedTrial`` and builds the untrained network, so the file is all a deployment needs to train
the winner again. JSON only: nothing in it can run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
import warnings

from optuna.trial import FixedTrial
from optuna.trial import FrozenTrial
import torch

from optuna_deepens import zero_cost

FORMAT = "optuna-deepens/architecture"
VERSION = 1


def architecture_record(
    trial: FrozenTrial,
    space: str,
    *,
    build_options: dict[str, Any] | None = None,
    suggest_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What identifies a trial's architecture, with its result and zero-cost metrics.

    ``suggest_options`` are the keyword arguments the search bound to the space's ``suggest``
    (``{"filtered": True}`` for the filtered MobileOne space). Parameters the space's
    ``suggest`` does not read (a learning rate searched beside it) are kept apart, as
    ``hyperparameters``: they trained the winner but do not build it.
    """
    suggest_options = dict(suggest_options or {})
    replay = FixedTrial(dict(trial.params))
    _space(space, "the trial").suggest(replay, **suggest_options)
    return {
        "format": FORMAT,
        "version": VERSION,
        "space": space,
        "params": {k: v for k, v in trial.params.items() if k in replay.params},
        "hyperparameters": {k: v for k, v in trial.params.items() if k not in replay.params},
        "suggest_options": suggest_options,
        "build_options": dict(build_options or {}),
        "trial": trial.number,
        "value": trial.values[0] if trial.values else None,  # Accuracy, first objective.
        "values": trial.values,
        "zero_cost": zero_cost.read_recorded(trial.user_attrs),
    }


def load_architecture(
    source: str | os.PathLike[str] | dict[str, Any],
) -> tuple[Any, torch.nn.Module]:
    """The config and the untrained model of an exported architecture (a path or a record)."""
    where = "the record" if isinstance(source, dict) else str(source)
    record = source if isinstance(source, dict) else _read(Path(source))
    if not isinstance(record, dict) or (record.get("format"), record.get("version")) != (
        FORMAT,
        VERSION,
    ):
        raise ValueError(
            f"{where} is not an architecture exported by optuna-deepens (format {FORMAT!r}, "
            f"version {VERSION}); make one with 'optuna-deepens export'."
        )
    space = _space(record.get("space"), where)
    for field in ("params", "suggest_options", "build_options"):
        if not isinstance(record.get(field, {}), dict):
            raise ValueError(f"{where}: {field!r} is not a JSON object; the file is damaged.")
    trial = FixedTrial(record.get("params", {}))
    with warnings.catch_warnings(record=True) as caught:  # FixedTrial only warns of a range.
        warnings.simplefilter("always")
        config = space.suggest(trial, **record.get("suggest_options", {}))
    outside = [str(w.message) for w in caught if "out of the range" in str(w.message)]
    if outside:
        raise ValueError(f"{where}: {outside[0]} The file was edited or made for another space.")
    unused = set(record.get("params", {})) - set(trial.params)
    if unused:
        raise ValueError(
            f"{where}: parameters {sorted(unused)} are not used by the {record['space']} "
            "space's suggest(): the file was made for another version of the space."
        )
    return config, space.build(config, **record.get("build_options", {}))


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read an exported architecture ({error}).") from error


def _space(name: Any, where: str) -> Any:
    from search_spaces import SPACES

    if name not in SPACES:
        raise ValueError(
            f"{where}: unknown search space {name!r}; choose one of {sorted(SPACES)}."
        )
    return SPACES[name]


def export_trial(
    trial: FrozenTrial,
    space: str,
    *,
    build_options: dict[str, Any] | None = None,
    suggest_options: dict[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
    onnx: str | os.PathLike[str] | None = None,
    image_size: int = 32,
) -> dict[str, Any]:
    """Write a trial's architecture as JSON (``out``) and its deployable graph (``onnx``).

    The ONNX model is the untrained network after ``search_spaces.reparameterize`` (MobileOne
    branches fused into one convolution), in eval mode, for a batch of one image.
    """
    record = architecture_record(
        trial, space, build_options=build_options, suggest_options=suggest_options
    )
    _, model = load_architecture(record)  # Proves the record rebuilds.
    if out is not None:
        Path(out).write_text(json.dumps(record, indent=2) + "\n")
    if onnx is not None:
        from search_spaces import reparameterize

        model.eval()
        reparameterize(model)
        example = torch.zeros(1, 3, image_size, image_size)
        torch.onnx.export(model, (example,), str(onnx), dynamo=False)
    return record


__all__ = ["architecture_record", "export_trial", "load_architecture"]
