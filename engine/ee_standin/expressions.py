"""Offline checker for Earth Engine Cloud API expressions.

An expression is the JSON the client sends in ``value:compute`` and ``*:export`` requests
(``ee.serializer.encode(obj, for_cloud_api=True)``)::

    {"result": "0", "values": {"0": <ValueNode>, ...}}

A ValueNode is exactly one of ``constantValue``, ``integerValue``, ``bytesValue``,
``nullValue``, ``arrayValue`` ({"values": [node...]}), ``dictionaryValue``
({"values": {key: node}}), ``functionDefinitionValue`` ({"argumentNames": [...], "body": key}),
``functionInvocationValue`` ({"functionName" | "functionReference", "arguments": {name: node}}),
``argumentReference`` (a name bound by an enclosing function definition) or ``valueReference``
(a key of ``values``).

:func:`check_expression` walks everything reachable from ``result`` and checks every function
invocation against the algorithm signatures in ``algorithms.json`` (the ListAlgorithms response
shipped in the earthengine-api wheel): the function exists, each argument name is declared and
every required (non-optional) argument is present. It needs neither the network nor ``ee``.

This module also holds small graph helpers (:class:`Graph`) shared by the stand-in's export and
compute handlers.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

NODE_KINDS = (
    "constantValue",
    "integerValue",
    "bytesValue",
    "nullValue",
    "arrayValue",
    "dictionaryValue",
    "functionDefinitionValue",
    "functionInvocationValue",
    "argumentReference",
    "valueReference",
)


def ee_test_data_path(filename: str) -> str:
    """Path of a file in the installed wheel's ``ee/tests/`` directory (without importing ee)."""
    spec = importlib.util.find_spec("ee")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("earthengine-api is not installed; cannot find ee/tests/" + filename)
    return os.path.join(list(spec.submodule_search_locations)[0], "tests", filename)


@dataclass(frozen=True)
class Signature:
    name: str
    args: tuple[str, ...]
    required: frozenset[str]
    returns: str


def load_algorithms_document(path: str | None = None) -> dict[str, Any]:
    """The raw ListAlgorithms response (``{"algorithms": [...]}``)."""
    with open(path or ee_test_data_path("algorithms.json"), encoding="utf-8") as f:
        return json.load(f)


def signatures_from_document(doc: Mapping[str, Any]) -> dict[str, Signature]:
    sigs: dict[str, Signature] = {}
    for alg in doc.get("algorithms", []):
        name = alg["name"]
        if name.startswith("algorithms/"):
            name = name[len("algorithms/"):]
        args = alg.get("arguments", []) or []
        sigs[name] = Signature(
            name=name,
            args=tuple(a["argumentName"] for a in args),
            required=frozenset(a["argumentName"] for a in args if not a.get("optional", False)),
            returns=alg.get("returnType", ""),
        )
    return sigs


@functools.lru_cache(maxsize=4)
def load_signatures(path: str | None = None) -> dict[str, Signature]:
    """Signatures keyed by function name (``"Image.select"``), cached per path."""
    return signatures_from_document(load_algorithms_document(path))


class Graph:
    """Read-only view of one expression: resolve references, find the root invocation."""

    def __init__(self, expr: Mapping[str, Any]):
        self.expr = expr
        self.values: Mapping[str, Any] = expr.get("values", {}) if isinstance(expr, Mapping) else {}
        self.result_key = expr.get("result") if isinstance(expr, Mapping) else None

    def resolve(self, node: Any, _depth: int = 0) -> Any:
        """Follow ``valueReference`` chains; returns a ValueNode (or None if dangling)."""
        while isinstance(node, Mapping) and "valueReference" in node and _depth < 1000:
            node = self.values.get(node["valueReference"])
            _depth += 1
        return node

    def root(self) -> Any:
        return self.resolve({"valueReference": self.result_key})

    @staticmethod
    def function_name(node: Any) -> str | None:
        if isinstance(node, Mapping) and "functionInvocationValue" in node:
            return node["functionInvocationValue"].get("functionName")
        return None

    def args(self, node: Any) -> dict[str, Any]:
        """Arguments of an invocation node, each resolved."""
        if not (isinstance(node, Mapping) and "functionInvocationValue" in node):
            return {}
        raw = node["functionInvocationValue"].get("arguments", {}) or {}
        return {k: self.resolve(v) for k, v in raw.items()}

    def arg(self, node: Any, name: str) -> Any:
        return self.args(node).get(name)

    def constant(self, node: Any, default: Any = None) -> Any:
        """Value of a constant node (also arrays/dictionaries of constants), else ``default``."""
        node = self.resolve(node)
        if not isinstance(node, Mapping):
            return default
        if "constantValue" in node:
            return node["constantValue"]
        if "integerValue" in node:
            return int(node["integerValue"])
        if "nullValue" in node:
            return None
        missing = object()
        if "arrayValue" in node:
            out = []
            for v in node["arrayValue"].get("values", []):
                c = self.constant(v, missing)
                if c is missing:
                    return default
                out.append(c)
            return out
        if "dictionaryValue" in node:
            outd = {}
            for k, v in node["dictionaryValue"].get("values", {}).items():
                c = self.constant(v, missing)
                if c is missing:
                    return default
                outd[k] = c
            return outd
        return default

    def invocations(self) -> Iterator[tuple[str, Any]]:
        """Every (functionName, node) reachable from the result (each value visited once)."""
        seen: set[int] = set()
        stack = [self.root()]
        while stack:
            node = stack.pop()
            if not isinstance(node, Mapping) or id(node) in seen:
                continue
            seen.add(id(node))
            if "valueReference" in node:
                stack.append(self.resolve(node))
            elif "arrayValue" in node:
                stack.extend(node["arrayValue"].get("values", []))
            elif "dictionaryValue" in node:
                stack.extend(node["dictionaryValue"].get("values", {}).values())
            elif "functionDefinitionValue" in node:
                stack.append(self.values.get(node["functionDefinitionValue"].get("body")))
            elif "functionInvocationValue" in node:
                inv = node["functionInvocationValue"]
                if "functionName" in inv:
                    yield inv["functionName"], node
                elif "functionReference" in inv:
                    stack.append(self.values.get(inv["functionReference"]))
                stack.extend((inv.get("arguments") or {}).values())


def check_expression(expr: Any, signatures: Mapping[str, Signature] | None = None) -> list[str]:
    """Check a serialised Cloud API expression; returns error messages (empty = valid).

    Messages mimic the server: ``"Unknown function: Image.selectt"``,
    ``"Image.select, argument 'bandz': unknown argument."``,
    ``"Image.select, argument 'bandSelectors': Parameter 'bandSelectors' is required."``.
    """
    sigs = load_signatures() if signatures is None else signatures
    errors: list[str] = []

    def err(msg: str) -> None:
        if msg not in errors:
            errors.append(msg)

    if not isinstance(expr, Mapping):
        return ["Invalid expression: expected an object with 'result' and 'values'."]
    values = expr.get("values")
    result = expr.get("result")
    if not isinstance(values, Mapping):
        return ["Invalid expression: 'values' must be an object."]
    if not isinstance(result, str) or result not in values:
        return [f"Invalid expression: result '{result}' is not a key of 'values'."]

    visited: set[tuple[str, frozenset[str]]] = set()

    def visit_key(key: Any, scope: frozenset[str], where: str) -> None:
        if not isinstance(key, str) or key not in values:
            err(f"Invalid expression: {where} refers to missing value '{key}'.")
            return
        if (key, scope) in visited:
            return
        visited.add((key, scope))
        visit(values[key], scope)

    def visit(node: Any, scope: frozenset[str]) -> None:
        if not isinstance(node, Mapping):
            err(f"Invalid expression: value node must be an object, got {type(node).__name__}.")
            return
        kinds = [k for k in node if k in NODE_KINDS]
        if len(kinds) != 1:
            err(f"Invalid expression: value node must have exactly one of {', '.join(NODE_KINDS)}; "
                f"got keys {sorted(node)}.")
            return
        kind = kinds[0]
        body = node[kind]
        if kind in ("constantValue", "bytesValue", "nullValue"):
            return
        if kind == "integerValue":
            try:
                int(body)
            except (TypeError, ValueError):
                err(f"Invalid expression: integerValue '{body}' is not an integer.")
            return
        if kind == "valueReference":
            visit_key(body, scope, "valueReference")
            return
        if kind == "argumentReference":
            if body not in scope:
                err(f"Invalid expression: argumentReference '{body}' is not bound by an enclosing "
                    "function definition.")
            return
        if kind == "arrayValue":
            items = body.get("values", []) if isinstance(body, Mapping) else None
            if not isinstance(items, list):
                err("Invalid expression: arrayValue.values must be a list.")
                return
            for item in items:
                visit(item, scope)
            return
        if kind == "dictionaryValue":
            items = body.get("values", {}) if isinstance(body, Mapping) else None
            if not isinstance(items, Mapping):
                err("Invalid expression: dictionaryValue.values must be an object.")
                return
            for item in items.values():
                visit(item, scope)
            return
        if kind == "functionDefinitionValue":
            names = body.get("argumentNames", []) if isinstance(body, Mapping) else None
            if not isinstance(names, list):
                err("Invalid expression: functionDefinitionValue.argumentNames must be a list.")
                return
            visit_key(body.get("body"), scope | frozenset(names), "functionDefinitionValue.body")
            return
        # functionInvocationValue
        if not isinstance(body, Mapping):
            err("Invalid expression: functionInvocationValue must be an object.")
            return
        arguments = body.get("arguments", {}) or {}
        if not isinstance(arguments, Mapping):
            err("Invalid expression: functionInvocationValue.arguments must be an object.")
            return
        if "functionName" in body:
            name = body["functionName"]
            sig = sigs.get(name)
            if sig is None:
                err(f"Unknown function: {name}")
            else:
                for arg in arguments:
                    if arg not in sig.args:
                        err(f"{name}, argument '{arg}': unknown argument.")
                for arg in sig.args:
                    if arg in sig.required and arg not in arguments:
                        err(f"{name}, argument '{arg}': Parameter '{arg}' is required.")
        elif "functionReference" in body:
            ref = body["functionReference"]
            target = values.get(ref) if isinstance(ref, str) else None
            seen_refs = 0
            while isinstance(target, Mapping) and "valueReference" in target and seen_refs < 100:
                target = values.get(target["valueReference"])
                seen_refs += 1
            if not (isinstance(target, Mapping) and "functionDefinitionValue" in target):
                err(f"Invalid expression: functionReference '{ref}' does not name a function "
                    "definition.")
            else:
                declared = target["functionDefinitionValue"].get("argumentNames", [])
                for arg in arguments:
                    if arg not in declared:
                        err(f"Function '{ref}', argument '{arg}': unknown argument.")
                visit_key(ref, scope, "functionReference")
        else:
            err("Invalid expression: functionInvocationValue needs functionName or "
                "functionReference.")
        for arg_node in arguments.values():
            visit(arg_node, scope)

    visit_key(result, frozenset(), "result")
    return errors
