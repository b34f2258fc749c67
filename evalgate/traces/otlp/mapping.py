"""The OTLP mapping: where route, state, user groups, session, input and output live in a team's attributes,
and which other attributes to keep in the trace's ``extra``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import Location, SuiteError


@dataclass(frozen=True)
class FieldRule:
    """Where one native field comes from: attributes, optionally only on spans of one name."""

    attributes: tuple[str, ...]
    span_name: str | None = None


@dataclass(frozen=True)
class Mapping:
    """Where a team keeps route, state, user groups (and more) in its own attributes."""

    route: FieldRule | None = FieldRule(("evalgate.route",))
    state: FieldRule | None = FieldRule(("evalgate.state",))
    groups: FieldRule | None = FieldRule(("evalgate.user.groups",))
    user: FieldRule | None = FieldRule(("user.id", "enduser.id"))
    session: FieldRule | None = FieldRule(("session.id", "gen_ai.conversation.id"))
    input: FieldRule | None = None
    output: FieldRule | None = None
    extra: tuple[tuple[str, FieldRule], ...] = ()
    """Any other attribute, kept as ``trace.extra.NAME`` (a gold key, a custom scorer's input)."""

    def attribute_names(self) -> set[str]:
        names: set[str] = set()
        for rule in (self.route, self.state, self.groups, self.user, self.session, self.input, self.output,
                     *(r for _, r in self.extra)):
            if rule is not None:
                names.update(rule.attributes)
        return names


MAPPING_FIELDS = ("route", "state", "groups", "user", "session", "input", "output", "extra")
RESERVED_EXTRA = ("otlp",)
"""``extra.otlp`` is the import's own (root span name, service, retrievals)."""


def parse_mapping(data: Any, where: str = "mapping") -> Mapping:
    """A Mapping from YAML: ``{route: {span_name: route_decision, attribute: app.route}, ...}``.

    A field given replaces its default; ``attribute`` may be a list (first found wins).
    Raises ValueError with a readable message.
    """
    if data is None:
        return Mapping()
    if not isinstance(data, dict):
        raise ValueError(f"{where} is a mapping of field → {{attribute: NAME, span_name: NAME}}")
    rules: dict[str, Any] = {}
    for key, value in data.items():
        if key not in MAPPING_FIELDS:
            from ...errors import did_you_mean

            hint = did_you_mean(str(key), MAPPING_FIELDS)
            raise ValueError(f"unknown {where} field '{key}'" + (f" ({hint})" if hint else f"; known: {', '.join(MAPPING_FIELDS)}"))
        if key == "extra":
            rules[key] = _extra_rules(value, f"{where}.extra")
        elif value is None:
            rules[key] = None
        else:
            rules[key] = _rule(value, f"{where}.{key}")
    return Mapping(**rules)


def _rule(value: Any, where: str) -> FieldRule:
    if isinstance(value, str):
        value = {"attribute": value}
    if not isinstance(value, dict) or "attribute" not in value or set(value) - {"attribute", "span_name"}:
        raise ValueError(f"{where} takes {{attribute: NAME (or a list), span_name: NAME (optional)}}")
    attrs = value["attribute"]
    attrs = (attrs,) if isinstance(attrs, str) else tuple(str(a) for a in attrs)
    if not attrs:
        raise ValueError(f"{where}.attribute is empty: name at least one attribute")
    span = value.get("span_name")
    return FieldRule(attrs, str(span) if span is not None else None)


def _extra_rules(value: Any, where: str) -> tuple[tuple[str, FieldRule], ...]:
    """``extra: {NAME: {attribute, span_name}}``: attributes kept as ``trace.extra.NAME``."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ValueError(f"{where} is a mapping of name → {{attribute: NAME, span_name: NAME}}, "
                         "e.g. extra: {app_turn_id: {attribute: app.turn_id}}")
    out = []
    for name, rule in value.items():
        if name in RESERVED_EXTRA:
            raise ValueError(f"{where}.{name}: extra.{name} is the import's own (span, service, retrievals); "
                             "choose another name")
        out.append((str(name), _rule(rule, f"{where}.{name}")))
    return tuple(out)


def load_mapping(path: Path) -> Mapping:
    """A mapping file (YAML), errors at its location."""
    from ..._yaml import load_yaml

    if not path.is_file():
        raise SuiteError(f"mapping file not found: {path}", hint="--mapping takes a YAML file of field → {attribute, span_name}")
    doc = load_yaml(path)
    data = doc.data.get("mapping", doc.data) if isinstance(doc.data, dict) else doc.data
    try:
        return parse_mapping(data)
    except ValueError as exc:
        raise SuiteError(str(exc), location=Location(str(path), 1),
                         hint="e.g. route: {span_name: route_decision, attribute: app.route}") from None
