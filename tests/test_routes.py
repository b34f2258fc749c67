"""Per-route precision and recall, and the confusion matrix stored with the run."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import query, write

from evalgate.api import route_confusion
from evalgate.store import Store


def test_route_confusion_and_per_route_metrics(cli, project: Path) -> None:
    # the demo bot routes to refunds when the message says "refund", else to smalltalk
    write(project / "suites" / "demo.yaml", """
        name: routes
        target: {python: bot:respond}
        cases:
          - {id: a, input: refund 1234, expect: {route: refunds}}                # refunds → refunds
          - {id: b, input: hello, expect: {route: smalltalk}}                    # smalltalk → smalltalk
          - {id: c, input: I want my money back, expect: {route: refunds}}       # refunds → smalltalk
          - {id: d, input: no refund talk please, expect: {route: smalltalk}}    # smalltalk → refunds
          - {id: e, input: hi, expect: {route: [greeting, smalltalk]}}           # counted as smalltalk → smalltalk
        gate:
          rules:
            - {metric: route.recall.refunds, min: 0.6}
            - {metric: route.precision.smalltalk, min: 0.6}
    """)
    r = cli("run", "--json")
    assert r.code == 1, r
    rules = {x["rule"]: x for x in r.json()["suites"][0]["verdict"]["rules"]}
    # expected refunds: a (hit), c (missed) → recall 1/2; taken smalltalk: b, c, e, of which b and e right → 2/3
    assert rules["route.recall.refunds ≥ 0.6"]["status"] == "fail" and rules["route.recall.refunds ≥ 0.6"]["value"] == 0.5
    assert rules["route.recall.refunds ≥ 0.6"]["cases"] == ["c"]
    assert rules["route.precision.smalltalk ≥ 0.6"]["value"] == 2 / 3
    db = project / ".evalgate" / "evalgate.duckdb"
    data = route_confusion(Store(db), "latest")
    assert data["matrix"] == {"refunds": {"refunds": 1, "smalltalk": 1}, "smalltalk": {"smalltalk": 2, "refunds": 1}}
    assert data["labels"] == ["refunds", "smalltalk"] and data["turns"] == 5 and data["accuracy"] == 3 / 5
    assert data["per_route"]["refunds"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert data["per_route"]["smalltalk"] == {"precision": 2 / 3, "recall": 2 / 3, "support": 3}
    # stored with the run, and shown by the command
    summary = json.loads(query(db, "SELECT summary FROM runs")[0][0])
    assert summary["routes"]["matrix"] == data["matrix"]
    assert cli("routes", "--json").json()["per_route"] == data["per_route"]
    r = cli("routes", data["run_id"][:10])
    assert r.code == 0 and "accuracy 60.0% over 5 turn(s)" in r.out, r
