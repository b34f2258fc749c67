"""Output scorers: what the system said.

``output`` compares text (equals, contains, avoids, matches), ``json`` checks
structured answers (valid JSON, a JSON Schema, values at paths), ``length``
bounds the answer's size and ``similarity`` scores it against a reference
answer. An empty or missing output is the empty string.
"""

from __future__ import annotations

from collections.abc import Callable

import json
import re
from typing import Any, Literal

from . import Check, Score, ScoreContext, scorer


def _clip(text: str, n: int = 60) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _pieces(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


@scorer("output", shorthand="equals", help="the answer equals, contains (all or any), avoids or matches text")
def output(equals: str | None = None, contains: str | list[str] | None = None,
           contains_any: list[str] | None = None, not_contains: str | list[str] | None = None,
           regex: str | None = None, case_sensitive: bool = False, collapse_whitespace: bool = False) -> Check:
    """Check the turn's output text.

    equals: the whole answer (whitespace trimmed); contains: every listed
    piece must appear; contains_any: at least one must; not_contains: none
    may; regex: a pattern that must match somewhere. Comparisons ignore case
    unless ``case_sensitive``; ``collapse_whitespace`` treats runs of spaces
    and newlines as one space.
    """
    if equals is None and contains is None and contains_any is None and not_contains is None and regex is None:
        raise ValueError("give at least one of: equals, contains, contains_any, not_contains, regex")
    if contains_any is not None and not contains_any:
        raise ValueError("contains_any needs at least one piece of text")
    must, must_not, some = _pieces(contains), _pieces(not_contains), list(contains_any or [])
    flags = 0 if case_sensitive else re.IGNORECASE
    try:
        pattern = re.compile(regex, flags) if regex is not None else None
    except re.error as exc:
        raise ValueError(f"invalid regex {regex!r}: {exc}") from None

    def fold(s: str) -> str:
        if collapse_whitespace:
            s = " ".join(s.split())
        return s if case_sensitive else s.casefold()

    def check(ctx: ScoreContext) -> Score:
        text = ctx.trace.output or ""
        folded = fold(text)
        problems: list[str] = []
        checks = 0
        if equals is not None:
            checks += 1
            if fold(text.strip()) != fold(equals.strip()):
                problems.append(f"output is {_clip(text)!r}, expected {_clip(equals)!r}")
        for piece in must:
            checks += 1
            if fold(piece) not in folded:
                problems.append(f"missing {piece!r}")
        if some:
            checks += 1
            if not any(fold(p) in folded for p in some):
                problems.append("none of " + ", ".join(repr(p) for p in some))
        for piece in must_not:
            checks += 1
            if fold(piece) in folded:
                problems.append(f"contains forbidden {piece!r}")
        if pattern is not None:
            checks += 1
            if not pattern.search(text):
                problems.append(f"no match for /{pattern.pattern}/")
        if problems:
            return Score(False, 1 - len(problems) / checks, "; ".join(problems))
        return Score(True, 1.0, f"{checks} output check(s) passed")

    return check


# --- JSON -----------------------------------------------------------------------------

_FENCE = re.compile(r"\A\s*```(?:json)?[ \t]*\n(.*?)\n?```\s*\Z", re.DOTALL | re.IGNORECASE)
_PATH_TOKEN = re.compile(r"""\.?([^.\[\]]+)|\[(-?\d+)\]|\[["']([^"']*)["']\]""")


def parse_path(path: str) -> list[str | int]:
    """``order.items[0].sku`` → ['order', 'items', 0, 'sku']; a leading ``$`` is allowed.

    Keys holding dots or brackets are written quoted: ``meta["a.b"]``.
    """
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if m is None or m.end() == pos or (m.group(1) is not None and pos > 0 and text[pos] != "."):
            raise ValueError(f"cannot read JSON path {path!r} at position {pos}: use a.b[0].c")
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(int(m.group(2)))
        else:
            steps.append(m.group(3))
        pos = m.end()
    if not steps:
        raise ValueError(f"empty JSON path {path!r}")
    return steps


_ABSENT = object()


def value_at(data: Any, steps: list[str | int]) -> Any:
    """The value at a parsed path, or ``_ABSENT`` when the path does not exist."""
    for step in steps:
        if isinstance(step, int):
            if not isinstance(data, list) or not -len(data) <= step < len(data):
                return _ABSENT
            data = data[step]
        else:
            if not isinstance(data, dict) or step not in data:
                return _ABSENT
            data = data[step]
    return data


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: true is not 1, 1 is 1.0, objects ignore key order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return bool(a == b)


def parse_json_output(text: str) -> Any:
    """The output as JSON; a single fenced block (```json ... ```) is unwrapped first. Raises ValueError."""
    m = _FENCE.match(text)
    return json.loads(m.group(1) if m else text)


@scorer("json", help="the answer is valid JSON, fits a JSON Schema, and has the expected values at paths")
def json_output(schema: dict[str, Any] | None = None, paths: dict[str, Any] | None = None, valid: bool = True) -> Check:
    """Parse the output as JSON (a single ```json fenced block is unwrapped).

    schema: a JSON Schema (any draft the ``jsonschema`` library knows, by
    ``$schema``; 2020-12 otherwise) the answer must satisfy; paths: simple
    paths (``a.b[0].c``) mapped to the value expected there, compared
    exactly. ``json: true`` only checks that the answer parses.
    """
    if not valid:
        raise ValueError("valid: false checks nothing; leave the scorer out instead")
    validator: Any = None
    if schema is not None:
        from jsonschema import exceptions, validators

        cls = validators.validator_for(schema, default=validators.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except exceptions.SchemaError as exc:
            raise ValueError(f"the schema is not a valid JSON Schema: {exc.message}") from None
        validator = cls(schema)
    parsed_paths = [(p, parse_path(p), want) for p, want in (paths or {}).items()]

    def check(ctx: ScoreContext) -> Score:
        text = ctx.trace.output or ""
        try:
            data = parse_json_output(text)
        except ValueError as exc:
            what = "empty output" if not text.strip() else f"{_clip(text, 40)!r}"
            return Score(False, 0.0, f"not JSON ({exc}): {what}")
        problems: list[str] = []
        checks = 1
        if validator is not None:
            checks += 1
            errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
            if errors:
                first = errors[0]
                where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path)
                more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
                problems.append(f"schema: {where}: {first.message}{more}")
        for shown, steps, want in parsed_paths:
            checks += 1
            got = value_at(data, steps)
            if got is _ABSENT:
                problems.append(f"{shown} is absent (expected {want!r})")
            elif not same_json(got, want):
                problems.append(f"{shown} = {json.dumps(got)[:60]}, expected {json.dumps(want)[:60]}")
        if problems:
            return Score(False, 1 - len(problems) / checks, "; ".join(problems))
        return Score(True, 1.0, "valid JSON" + (", fits the schema" if validator is not None else "")
                     + (f", {len(parsed_paths)} path(s) as expected" if parsed_paths else ""))

    return check


# --- size and similarity -----------------------------------------------------------------


@scorer("length", help="the answer's length in characters or words is within bounds", stats=("chars", "words"))
def length(min_chars: int | None = None, max_chars: int | None = None, min_words: int | None = None,
           max_words: int | None = None) -> Check:
    """Bounds on the output's length (inclusive); words are whitespace-separated. Value: the character count."""
    bounds = {"min_chars": min_chars, "max_chars": max_chars, "min_words": min_words, "max_words": max_words}
    if all(v is None for v in bounds.values()):
        raise ValueError("give at least one of: min_chars, max_chars, min_words, max_words")
    for name, v in bounds.items():
        if v is not None and v < 0:
            raise ValueError(f"{name} must be ≥ 0")
    if min_chars is not None and max_chars is not None and min_chars > max_chars:
        raise ValueError("min_chars is larger than max_chars")
    if min_words is not None and max_words is not None and min_words > max_words:
        raise ValueError("min_words is larger than max_words")

    def check(ctx: ScoreContext) -> Score:
        text = (ctx.trace.output or "").strip()
        chars, words = len(text), len(text.split())
        problems = []
        if min_chars is not None and chars < min_chars:
            problems.append(f"{chars} characters, fewer than {min_chars}")
        if max_chars is not None and chars > max_chars:
            problems.append(f"{chars} characters, more than {max_chars}")
        if min_words is not None and words < min_words:
            problems.append(f"{words} words, fewer than {min_words}")
        if max_words is not None and words > max_words:
            problems.append(f"{words} words, more than {max_words}")
        metrics = {"chars": float(chars), "words": float(words)}
        if problems:
            return Score(False, float(chars), "; ".join(problems), metrics=metrics)
        return Score(True, float(chars), f"{chars} characters, {words} words", metrics=metrics)

    return check


SimilarityMethod = Literal["ratio", "partial_ratio", "token_sort_ratio", "token_set_ratio"]


@scorer("similarity", shorthand="expected", help="the answer is close enough to a reference answer (rapidfuzz, 0–1)",
        stats=("similarity",))
def similarity(expected: str, threshold: float = 0.8, method: SimilarityMethod = "token_sort_ratio",
               case_sensitive: bool = False) -> Check:
    """String similarity in [0, 1] between the output and ``expected``; passes at ``threshold`` or above.

    Methods are rapidfuzz's: ``ratio`` (normalised Indel similarity of the
    whole strings), ``partial_ratio`` (best-matching substring),
    ``token_sort_ratio`` (words sorted first, the default: word order does
    not matter) and ``token_set_ratio`` (shared words weigh most). Case and
    punctuation are ignored unless ``case_sensitive``.
    """
    if not 0 <= threshold <= 1:
        raise ValueError("threshold is a similarity between 0 and 1, e.g. 0.8")
    from rapidfuzz import fuzz, utils

    compare: Callable[..., float] = getattr(fuzz, method)
    # by default case and punctuation do not count (rapidfuzz's default_process)
    process: Callable[[str], str] = (lambda s: s.strip()) if case_sensitive else utils.default_process

    def check(ctx: ScoreContext) -> Score:
        text = ctx.trace.output or ""
        value = round(compare(process(text), process(expected)) / 100.0, 4)
        verdict = "≥" if value >= threshold else "<"
        return Score(value >= threshold, value, f"{method} similarity {value:.2f} {verdict} {threshold:g} "
                     f"to {_clip(expected, 40)!r}", metrics={"similarity": value})

    return check


SYSTEM_ERROR = "system_error"


def system_error(error: str) -> Score:
    """The failed score of a turn the system answered with an error (its trace's ``error``)."""
    return Score(False, 0.0, f"the system answered with an error: {error}", scorer=SYSTEM_ERROR)


@scorer(SYSTEM_ERROR, help="the system answered without an error (added by itself to every turn whose trace has one)")
def no_system_error() -> Check:
    """Fail a turn whose trace reports an error.

    evalgate adds this score by itself to every turn the system answered with an
    error, so ``system_error.failures`` counts them; naming it in ``expect``
    checks the same on every turn.
    """

    def check(ctx: ScoreContext) -> Score:
        if ctx.trace.error:
            return system_error(ctx.trace.error)
        return Score(True, 1.0, "no error")

    return check
