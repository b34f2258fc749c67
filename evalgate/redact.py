"""Redaction: personal data and secrets out of production traces before
anything is stored, cached or reported.

Built-in detectors (email addresses, phone numbers, card numbers that pass
the Luhn checksum, API keys, bearer tokens), a suite's own patterns and a
``module:function`` hook. Redaction is consistent: within one import or run
the same value always becomes the same placeholder (``<EMAIL_1>``), so state
and expectations that repeat a value still match. It is counted by kind,
never by value.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# A detector: a kind (the placeholder's name), a regex, and an optional check of the match.
# When the regex has a group named "v", only that group is replaced (e.g. the token after "Bearer ").


@dataclass(frozen=True)
class Detector:
    """One kind of value to redact: a regex and an optional validity check."""

    kind: str
    regex: re.Pattern[str]
    valid: Callable[[str], bool] | None = None
    quick: Callable[[Any], bool] | None = None
    """A cheap test that is true for every text the regex could match (the regex runs only then)."""


def luhn_ok(number: str) -> bool:
    """True when the digits of ``number`` pass the Luhn checksum (card numbers do)."""
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _phone_ok(text: str) -> bool:
    n = sum(c.isdigit() for c in text)
    return 9 <= n <= 15


_KEY_PREFIX = re.compile(r"sk-|pk_|rk_|gh[pousr]_|github_pat_|AKIA|AIza|xox")
# digits become "0", separators go, everything else becomes "x": a card or phone number leaves nine zeros in a row
_DIGIT_TABLE = bytes(48 if 48 <= i <= 57 else 120 for i in range(256))
_SEPARATORS = b" .()-+"
_NINE_DIGITS = b"000000000"


_KEY_PREFIX_BYTES = re.compile(_KEY_PREFIX.pattern.encode())

# the cheap tests take text or the recorded line's bytes (no decoding on the common path)


def _has_key_prefix(text: str | bytes) -> bool:
    if isinstance(text, bytes):
        return _KEY_PREFIX_BYTES.search(text) is not None
    return _KEY_PREFIX.search(text) is not None


def _has_digit_run(text: str | bytes) -> bool:
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "ignore")
    return _NINE_DIGITS in raw.translate(_DIGIT_TABLE, _SEPARATORS)


def _has_at(text: str | bytes) -> bool:
    return b"@" in text if isinstance(text, bytes) else "@" in text


def _has_bearer(text: str | bytes) -> bool:
    return b"earer" in text if isinstance(text, bytes) else "earer" in text


BUILTIN: dict[str, Detector] = {
    "api_key": Detector("API_KEY", re.compile(
        r"(?<![\w-])(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}|(?:pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
        r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,})"), quick=_has_key_prefix),
    "bearer": Detector("TOKEN", re.compile(r"\b[Bb]earer\s+(?P<v>[A-Za-z0-9._~+/=-]{8,})"), quick=_has_bearer),
    "email": Detector("EMAIL", re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
                      quick=_has_at),
    "card": Detector("CARD", re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])"), luhn_ok, _has_digit_run),
    "phone": Detector("PHONE", re.compile(
        r"(?<![\w+])(?=(?:[ .()+-]{0,3}\d){9})(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?![\w])"),
        _phone_ok, _has_digit_run),
}
"""The built-in detectors, in the order they run (secrets first, phone numbers last)."""

_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")


@dataclass
class Redactor:
    """Replaces detected values with consistent placeholders and counts them by kind."""

    detectors: list[Detector] = field(default_factory=lambda: list(BUILTIN.values()))
    hook: Callable[[str], Iterable[tuple[str, str]]] | None = None
    """module:function(text) -> (kind, value) pairs it found; evalgate replaces them."""
    counts: Counter[str] = field(default_factory=Counter)
    """Values replaced, by kind (occurrences)."""
    _seen: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _distinct: Counter[str] = field(default_factory=Counter, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.detectors) or self.hook is not None

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        found = self._seen.get(key)
        if found is None:
            self._distinct[kind] += 1
            found = f"<{kind}_{self._distinct[kind]}>"
            self._seen[key] = found
        self.counts[kind] += 1
        return found

    def text(self, value: str) -> str:
        """One string, redacted."""
        for det in self.detectors:
            if det.quick is not None and not det.quick(value):
                continue
            value = det.regex.sub(lambda m, d=det: self._replace(m, d), value)  # type: ignore[misc]
        if self.hook is not None:
            for kind, found in self.hook(value) or ():
                if found and found in value and not _PLACEHOLDER.fullmatch(found):
                    value = value.replace(found, self.placeholder(str(kind).upper(), found))
        return value

    def finds(self, text: str | bytes) -> bool:
        """Whether redaction could change ``text`` (or UTF-8 bytes); counts nothing; always true with a hook."""
        if self.hook is not None:
            return True
        quick: dict[Any, bool] = {}
        decoded: str | None = None
        for det in self.detectors:
            if det.quick is not None:
                if det.quick not in quick:
                    quick[det.quick] = det.quick(text)
                if not quick[det.quick]:
                    continue
            if decoded is None:
                decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
            for m in det.regex.finditer(decoded):
                if _PLACEHOLDER.fullmatch(m.group(0)):
                    continue
                if det.valid is None or "v" in det.regex.groupindex or det.valid(m.group(0)):
                    return True
        return False

    def _replace(self, m: re.Match[str], det: Detector) -> str:
        whole = m.group(0)
        if _PLACEHOLDER.fullmatch(whole):
            return whole
        if "v" in det.regex.groupindex and m.group("v") is not None:
            start, end = m.span("v")
            value = m.group("v")
            base = m.start(0)
            return whole[: start - base] + self.placeholder(det.kind, value) + whole[end - base:]
        if det.valid is not None and not det.valid(whole):
            return whole
        return self.placeholder(det.kind, whole)

    def value(self, obj: Any) -> Any:
        """Any JSON-like value with every string in it redacted (keys are kept)."""
        if isinstance(obj, str):
            return self.text(obj) if obj else obj
        if isinstance(obj, dict):
            return {k: self.value(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.value(v) for v in obj]
        return obj

    def summary(self) -> dict[str, int]:
        """Redacted values by kind (lower-case), for reports: counts, never values."""
        return {k.lower(): n for k, n in sorted(self.counts.items())}


def build_redactor(detectors: list[str] | None = None, patterns: dict[str, str] | None = None,
                   python: str | None = None) -> Redactor:
    """A redactor from names of built-in detectors, named regexes and a module:function hook.

    ``detectors=None`` means every built-in one; ``[]`` none. Raises ValueError
    with a readable message on an unknown detector, a bad regex or a hook that
    cannot be imported.
    """
    chosen: list[Detector] = []
    for name in (list(BUILTIN) if detectors is None else detectors):
        if name not in BUILTIN:
            raise ValueError(f"unknown redaction detector '{name}' (known: {', '.join(BUILTIN)})")
        chosen.append(BUILTIN[name])
    for name, regex in (patterns or {}).items():
        try:
            chosen.append(Detector(re.sub(r"\W", "_", name).upper(), re.compile(regex)))
        except re.error as exc:
            raise ValueError(f"redaction pattern '{name}' is not a valid regex: {exc}") from None
    hook = load_hook(python) if python else None
    return Redactor(chosen, hook)


def load_hook(ref: str) -> Callable[[str], Iterable[tuple[str, str]]]:
    """Import ``package.module:function``."""
    from .references import import_reference

    try:
        obj = import_reference(ref)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"cannot import redaction hook '{ref}': {exc}") from None
    if not callable(obj):
        raise ValueError(f"redaction hook '{ref}' is not callable")
    hook: Callable[[str], Iterable[tuple[str, str]]] = obj
    return hook
