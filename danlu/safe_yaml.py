"""YAML for recipes, with aliases bounded: ``&a [*b, *b, ...]`` nested a few levels is a few hundred bytes
that expand to billions of values (a "billion laughs" bomb), and everything that walks a recipe (the
line index, pydantic, dumping it back) pays for the expansion.

Anchors and aliases stay allowed (they are handy for repeated options), but the document they expand to
may hold at most ``MAX_EXPANDED_NODES`` values, counted on the composed node graph before anything is
constructed, in time linear in the file. A recursive alias (``&a [*a]``) is refused too, and so is
nesting deeper than ``MAX_DEPTH`` (PyYAML's composer would die of a RecursionError, an internal error).
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_EXPANDED_NODES = 100_000  # the biggest built-in recipe has ~100 values; a big hand-written one, thousands
MAX_DEPTH = 100  # recipes nest 3-4 levels; PyYAML's composer recurses, and hits Python's stack limit near 1000


class AliasBomb(yaml.MarkedYAMLError):
    """A document whose aliases expand past the budget (or into themselves), or that nests too deep."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that measures what each composed document expands to before constructing it."""

    def compose_document(self) -> Any:
        node = super().compose_document()
        if self.anchors_used:
            _check_expansion(node)
        return node

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.anchors_used = True
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise AliasBomb(None, None, f"values are nested more than {MAX_DEPTH} levels deep",
                                self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    anchors_used = False
    depth = 0


def _check_expansion(root: yaml.Node) -> None:
    """Values the document holds once every alias is expanded: sizes memoized per node, so a node that
    is referenced a million times is counted once (iterative, so deep nesting cannot blow the stack)."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > MAX_EXPANDED_NODES:
                raise AliasBomb(None, None, f"its aliases expand to more than {MAX_EXPANDED_NODES:,} values "
                                "(a YAML alias bomb?); write the values out, or use fewer nested aliases",
                                node.start_mark)
            continue
        if key in size:
            continue
        if key in on_path:
            raise AliasBomb(None, None, "an alias refers to the node that contains it (a recursive alias)",
                            node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load(text: str) -> Any:
    """``yaml.safe_load`` with bounded aliases (raises AliasBomb, a YAMLError, past the budget)."""
    return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - a SafeLoader subclass


def compose(text: str) -> yaml.Node | None:
    """``yaml.compose`` with the same bound."""
    return yaml.compose(text, Loader=BoundedLoader)
