"""A Griffe extension for the API reference: show attributes by what they mean, not their code.

* ``title: str = attrs.field(validator=_check)`` would render as written, private validator
  included: the shown value becomes the ``default=`` (or ``factory()``), none when required.
* ``self.status_code = status_code`` in an ``__init__`` would render as ``status_code =
  status_code``: attributes set on ``self`` show no value.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe

_FIELD_FUNCTIONS = frozenset({"attrs.field", "attr.ib", "attr.field", "field"})


def _assigned_on_self(node: Any) -> bool:
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    else:
        return False
    return any(isinstance(target, ast.Attribute) for target in targets)


class AttrsFieldDefaults(griffe.Extension):
    """Replace ``attrs.field(...)`` values with the default; drop values assigned on ``self``."""

    def on_attribute_instance(
        self, *, node: Any, attr: griffe.Attribute, agent: Any, **kwargs: Any
    ) -> None:
        if _assigned_on_self(node):
            attr.value = None
            return
        value = attr.value
        if not isinstance(value, griffe.ExprCall) or str(value.function) not in _FIELD_FUNCTIONS:
            return
        shown: str | griffe.Expr | None = None
        for argument in value.arguments:
            if not isinstance(argument, griffe.ExprKeyword):
                continue
            if argument.name == "default":
                shown = argument.value
            elif argument.name == "factory":
                factory = argument.value
                shown = factory.body if isinstance(factory, griffe.ExprLambda) else f"{factory}()"
        attr.value = shown
