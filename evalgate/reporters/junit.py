"""JUnit XML: one test per case run, so CI systems show failures natively."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ..store import Store, queries


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _x(text: object) -> str:
    """Text XML 1.0 can hold: control characters from model output become U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(text))


def write_junit(report: Any, store: Store, path: Path | str) -> Path:
    """Write every case run of every suite in ``report`` as JUnit XML."""
    root = ET.Element("testsuites", name="evalgate")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    with store.connect(read_only=True) as con:
        for s in report.suites:
            suite_el = ET.SubElement(root, "testsuite", name=_x(s.suite))
            props = ET.SubElement(suite_el, "properties")
            ET.SubElement(props, "property", name="run_id", value=s.run_id)
            ET.SubElement(props, "property", name="verdict", value=s.verdict.status)
            counts = {"tests": 0, "failures": 0, "errors": 0}
            for rule in s.verdict.rules:  # the gate's rules are tests too: a failed rule must show as red
                if rule.status == "skipped":
                    continue
                rule_el = ET.SubElement(suite_el, "testcase", name=_x(f"gate: {rule.rule}"), classname=_x(f"{s.suite}.gate"))
                counts["tests"] += 1
                if rule.status == "fail":
                    counts["failures"] += 1
                    el = ET.SubElement(rule_el, "failure", message=_x(rule.detail))
                    el.text = _x(rule.detail + (f"\ncases: {', '.join(rule.cases)}" if rule.cases else ""))
                elif rule.status == "inconclusive":  # undecided, and the gate let it pass: shown, not red
                    ET.SubElement(rule_el, "skipped", message=_x(f"inconclusive: {rule.detail}"))
            rows = queries.case_runs(con, s.run_id)
            repeated = any(r.repeat for r in rows)
            reasons = queries.failure_reasons(con, s.run_id)
            for r in rows:
                case_id, repeat, passed, errored, error, elapsed, source = (r.case_id, r.repeat, r.passed, r.errored,
                                                                            r.error, r.elapsed_ms, r.source)
                name = case_id if not repeated else f"{case_id} [repeat {repeat}]"
                case_el = ET.SubElement(suite_el, "testcase", name=_x(name), classname=_x(s.suite),
                                        time=f"{(elapsed or 0) / 1000:.3f}", file=_x(source or ""))
                counts["tests"] += 1
                why = reasons.get((case_id, repeat), [])
                if errored:
                    counts["errors"] += 1
                    el = ET.SubElement(case_el, "error", message=_x(error or "error"))
                    el.text = _x("\n".join([str(error)] + why))
                elif not passed:
                    counts["failures"] += 1
                    el = ET.SubElement(case_el, "failure", message=_x(why[0] if why else "failed"))
                    el.text = _x("\n".join(why))
            for k, v in counts.items():
                suite_el.set(k, str(v))
                totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
