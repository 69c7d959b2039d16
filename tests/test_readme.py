"""The README's snippets compile and call only names that exist."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
import re

import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_there_are_snippets() -> None:
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_names_exist(index: int) -> None:
    tree = ast.parse(SNIPPETS[index])
    modules: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name] = importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"
                ), f"{node.module}.{alias.name}"
                modules[alias.asname or alias.name] = getattr(module, alias.name, None)
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {
        t.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    for node in ast.walk(tree):
        # module.attribute.chain: every link exists.
        if isinstance(node, ast.Attribute):
            chain = []
            inner: ast.AST = node
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if (
                isinstance(inner, ast.Name)
                and inner.id in modules
                and modules[inner.id] is not None
            ):
                target = modules[inner.id]
                for name in reversed(chain):
                    if not hasattr(target, name):
                        break  # An attribute of a returned object, e.g. study.best_trial.
                    target = getattr(target, name)
                else:
                    continue
                # The first link must exist on the module itself.
                assert hasattr(modules[inner.id], chain[-1]), f"{inner.id}.{chain[-1]}"
        # Plain calls: defined in the snippet, imported, or a builtin.
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            assert (
                name in defined
                or name in modules
                or name in dir(__builtins__)
                or hasattr(__import__("builtins"), name)
            ), f"{name}() is not defined in snippet {index}"
