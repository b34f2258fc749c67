"""YAML loading that remembers where every value came from.

Suites are validated after parsing; when validation fails we still want to
say "suites/support.yaml:14:9", so we keep the composed node tree beside the
constructed data and walk it along the error's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import Location, SuiteError

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is several times faster


@dataclass
class YamlDoc:
    """Parsed YAML data plus the node tree used to locate values in the file."""

    path: str
    data: Any
    node: yaml.Node | None

    def locate(self, loc: Sequence[str | int], *, key: bool = False) -> Location:
        """The file location of the value at ``loc`` (or of its key when ``key``).

        Walks as deep as the path exists; a missing tail points at the
        nearest enclosing value, which is where the user has to look.
        """
        node = self.node
        target: yaml.Node | None = node
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                found = None
                for k, v in node.value:
                    if k.value == str(part):
                        found = (k, v)
                        break
                if found is None:
                    break
                target = found[0] if key and part == loc[-1] else found[1]
                node = found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    break
                node = node.value[part]
                target = node
            else:
                break
        if target is None:
            return Location(self.path)
        mark = target.start_mark
        return Location(self.path, mark.line + 1, mark.column + 1)


MAX_EXPANDED = 1_000_000
"""Most values a document may hold once its aliases are expanded: more is an alias bomb, not a suite."""


def _expanded_size(root: Any, path: str) -> None:
    """Refuse documents whose aliases expand past ``MAX_EXPANDED`` values ("billion laughs") or refer to themselves."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else (
                node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            open_.discard(key)
            if sizes[key] > MAX_EXPANDED:
                mark = node.start_mark
                raise SuiteError(f"YAML aliases expand to more than {MAX_EXPANDED:,} values",
                                 location=Location(path, mark.line + 1, mark.column + 1),
                                 hint="an anchor (&name) repeated by aliases (*name) inside each other multiplies; "
                                      "write the values out, or use fewer nested aliases")
            continue
        if key in sizes:
            continue
        if key in open_:
            mark = node.start_mark
            raise SuiteError("a YAML alias refers to a value that contains it", location=Location(
                path, mark.line + 1, mark.column + 1), hint="an alias (*name) may not appear inside its own anchor")
        open_.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            stack.extend((c, False) for pair in node.value for c in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((c, False) for c in node.value)


def _no_duplicate_keys(root: Any, path: str) -> None:
    """A key written twice in one mapping is an error at the second one (YAML would keep the last silently)."""
    stack = [root]
    seen_nodes: set[int] = set()  # an aliased node is checked once
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        mark = key.start_mark
                        raise SuiteError(f"duplicate key '{key.value}' (first at line {seen[key.value]})",
                                         location=Location(path, mark.line + 1, mark.column + 1),
                                         hint="a key may appear once per mapping; remove or merge one of them")
                    seen[key.value] = key.start_mark.line + 1
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def load_yaml(path: Path | str, text: str | None = None) -> YamlDoc:
    """Parse one YAML file, turning syntax errors into a located SuiteError."""
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SuiteError(f"file not found: {path}", hint="check the path; relative paths are resolved from the suite's folder") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SuiteError(f"cannot read {path}: {exc}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _expanded_size(node, path)
            _no_duplicate_keys(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        problem = exc.problem or str(exc)
        context = f" {exc.context}" if exc.context else ""
        raise SuiteError(f"invalid YAML: {problem}{context}", location=loc,
                         hint="check indentation and quoting near this line") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"invalid YAML: {exc}", location=Location(path)) from None
    finally:
        loader.dispose()
    return YamlDoc(path, data, node)
