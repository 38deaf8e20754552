"""House rules of the package: every module documented in the API reference, attention computed only in the core."""

import ast
import importlib
import pkgutil
from pathlib import Path

import attnbook

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["attnbook"] + sorted(m.name for m in pkgutil.walk_packages(attnbook.__path__, "attnbook."))
NORMALISERS = {"softmax", "masked_softmax", "segment_softmax"}  # log_softmax of output logits is not attention
WEIGHTED_SUMS = {"matmul", "bmm", "einsum"}
CORE = ("attnbook.core", "attnbook.variants")  # the places where attention is computed


def test_every_module_has_a_page_in_the_api_reference():
    """A new module needs book/api/<module name>.md: a title and an automodule directive, as in the others."""
    missing = [name for name in MODULES if not (ROOT / "book" / "api" / f"{name}.md").is_file()]
    assert not missing, f"add a page like book/api/attnbook.gat.md for: {missing}"
    for name in MODULES:
        page = (ROOT / "book" / "api" / f"{name}.md").read_text()
        assert f".. automodule:: {name}\n" in page, name


def test_every_module_opens_with_a_docstring():
    assert [name for name in MODULES if not (importlib.import_module(name).__doc__ or "").strip()] == []


def _called_names(node: ast.AST) -> set[str]:
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
        if isinstance(call, ast.BinOp) and isinstance(call.op, ast.MatMult):
            names.add("matmul")
    return names


def test_only_the_core_normalises_scores_and_averages_with_them():
    """No function outside `attnbook.core` both normalises (softmax) and takes a weighted sum (a matmul)."""
    offenders = []
    for name in MODULES:
        if name.startswith(CORE):
            continue
        path = Path(importlib.import_module(name).__file__)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                called = _called_names(node)
                if called & NORMALISERS and called & WEIGHTED_SUMS:
                    offenders.append(f"{name}.{node.name}")
    assert offenders == [], f"route these through attnbook.core.attention: {offenders}"


def test_the_check_finds_attention_written_by_hand():
    source = "def attend(q, k, v):\n    return torch.softmax(q @ k.T, -1) @ v\n"
    called = _called_names(ast.parse(source).body[0])
    assert called & NORMALISERS and called & WEIGHTED_SUMS
