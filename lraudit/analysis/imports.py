"""Module import table: which local names stand for which qualified names.

Built from the parsed tree in one pass over its import statements (wherever they are: module level,
inside functions, under ``try``). This is the name resolution the model needs (imports and aliases
of torch.optim, lr_scheduler, transformers, accelerate); it costs a fraction of libcst's
Scope/QualifiedName providers, which DESIGN.md measured at 10x the parse itself.
"""
from __future__ import annotations

import ast
from typing import Dict, Optional

import libcst as cst


def dotted_name(node: cst.BaseExpression) -> Optional[str]:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


class ImportTable:
    """Local name -> qualified name, for every name an import statement binds."""

    def __init__(self) -> None:
        self.aliases: Dict[str, str] = {}
        # Names bound by more than one import to different targets: ambiguous, resolved to nothing.
        self._conflicts: set = set()

    def bind(self, local: str, qualified: str) -> None:
        previous = self.aliases.get(local)
        if previous is not None and previous != qualified:
            self._conflicts.add(local)
        self.aliases[local] = qualified

    def resolve(self, dotted: str) -> Optional[str]:
        """Qualified name of a dotted expression, when its head is an imported name."""
        head, _, rest = dotted.partition(".")
        if head in self._conflicts:
            return None
        target = self.aliases.get(head)
        if target is None:
            return None
        return f"{target}.{rest}" if rest else target

    def resolve_expr(self, node: cst.BaseExpression) -> Optional[str]:
        dotted = dotted_name(node)
        return self.resolve(dotted) if dotted else None

    def mentions(self, prefix: str) -> bool:
        return any(q == prefix or q.startswith(prefix + ".") for q in self.aliases.values())


def _module_name(node: Optional[cst.BaseExpression]) -> str:
    return dotted_name(node) if node is not None else ""


class _ImportCollector(cst.CSTVisitor):
    def __init__(self, table: ImportTable) -> None:
        self.table = table

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = dotted_name(alias.name)
            if name is None:
                continue
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.table.bind(alias.asname.name.value, name)
            else:
                # `import torch.optim` binds `torch`, and `torch.optim...` resolves through it.
                head = name.split(".", 1)[0]
                self.table.bind(head, head)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        module = _module_name(node.module)
        if isinstance(node.names, cst.ImportStar) or not (module or node.relative):
            return
        level = len(node.relative)
        for alias in node.names:
            name = dotted_name(alias.name)
            if name is None:
                continue
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            self.table.bind(local, relative_name(level, module, name) if level else f"{module}.{name}")

    # Imports never hide inside expressions: skip them for speed.
    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        return any(isinstance(s, (cst.Import, cst.ImportFrom)) for s in node.body)


def relative_name(level: int, module: Optional[str], name: Optional[str]) -> str:
    """``from ..utils import x`` -> ``..utils.x``; ``from . import engine`` -> ``.engine``."""
    parts = [p for p in (module, name) if p]
    return "." * level + ".".join(parts)


def bind_imports(tree: ast.AST, imports: ImportTable) -> None:
    """Every import statement of ``tree`` (anywhere), relative ones kept relative."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    imports.bind(alias.asname, alias.name)
                else:
                    head = alias.name.split(".", 1)[0]
                    imports.bind(head, head)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    continue
                if node.level:
                    imports.bind(alias.asname or alias.name, relative_name(node.level, node.module, alias.name))
                elif node.module:
                    imports.bind(alias.asname or alias.name, f"{node.module}.{alias.name}")


def build_import_table(module: cst.Module) -> ImportTable:
    table = ImportTable()
    module.visit(_ImportCollector(table))
    return table
