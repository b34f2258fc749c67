"""Per-route precision, recall and F1, macro-F1, and the confusion matrix stored with the run."""

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
    assert data["per_route"]["refunds"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert data["per_route"]["smalltalk"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    assert data["macro_f1"] == 7 / 12
    # stored with the run, and shown by the command
    summary = json.loads(query(db, "SELECT summary FROM runs")[0][0])
    assert summary["routes"]["matrix"] == data["matrix"]
    assert cli("routes", "--json").json()["per_route"] == data["per_route"]
    r = cli("routes", data["run_id"][:10])
    assert r.code == 0 and "accuracy 60.0% over 5 turn(s)" in r.out, r


# The router takes the route its input names ("-": none), so each case's misrouting is written in the suite.
ROUTER = """
def respond(req):
    taken = req["input"].split()[-1]
    return {"output": "ok", **({} if taken == "-" else {"route": taken})}
"""

# expected → taken, ten turns:
#   refunds → refunds ×3 (r1-r3), → billing (r4), → no route (r5)
#   billing → billing ×2 (b1, b2), → refunds and → handoff (b3, one case of two turns)
#   account → billing (a1)
ROUTED = """
    name: f1
    target: {python: router:respond}
    cases:
      - {id: r1, input: go refunds, expect: {route: refunds}}
      - {id: r2, input: go refunds, expect: {route: refunds}}
      - {id: r3, input: go refunds, expect: {route: refunds}}
      - {id: r4, input: go billing, expect: {route: refunds}}
      - {id: r5, input: go -, expect: {route: refunds}}
      - {id: b1, input: go billing, expect: {route: billing}}
      - {id: b2, input: go billing, expect: {route: billing}}
      - id: b3
        turns:
          - {input: go refunds, expect: {route: billing}}
          - {input: go handoff, expect: {route: billing}}
      - {id: a1, input: go billing, expect: {route: account}}
"""


def test_route_f1_and_macro_f1_in_rules_routes_and_the_summary(cli, project: Path) -> None:
    write(project / "router.py", ROUTER)
    write(project / "suites" / "demo.yaml", ROUTED + """
    gate:
      rules:
        - {metric: route.macro_f1, min: 0.8}
        - {metric: route.macro_f1, min: 0.25}
        - {metric: route.f1.refunds, min: 0.9}
        - {metric: route.f1.billing, min: 0.5}
        - {metric: route.f1.account, max: 0}
        - {metric: route.f1.nosuchroute, min: 0.5}
    """)
    r = cli("run", "--json")
    assert r.code == 1, r
    suite = r.json()["suites"][0]
    rules = {x["rule"]: x for x in suite["verdict"]["rules"]}
    # refunds: right 3, taken 4 (r1-r3, b3), expected 5 → P 3/4, R 3/5, F1 = 2·3 ÷ (4 + 5) = 2/3
    # billing: right 2, taken 4 (r4, b1, b2, a1), expected 4 → P 1/2, R 1/2, F1 1/2
    # account: expected once, never taken → P undefined, R 0, F1 0; handoff: taken once, never expected → F1 0
    # macro over refunds, billing, account, handoff ("(none)" is not a route) = (2/3 + 1/2 + 0 + 0) ÷ 4 = 7/24
    low, high = rules["route.macro_f1 ≥ 0.8"], rules["route.macro_f1 ≥ 0.25"]
    assert low["status"] == "fail" and low["value"] == 7 / 24 and low["cases"] == ["r4", "r5", "b3", "a1"], low
    assert high["status"] == "pass" and high["value"] == 7 / 24, high
    refunds = rules["route.f1.refunds ≥ 0.9"]
    assert refunds["status"] == "fail" and refunds["value"] == 2 / 3 and refunds["cases"] == ["r4", "r5", "b3"], refunds
    assert rules["route.f1.billing ≥ 0.5"]["status"] == "pass" and rules["route.f1.billing ≥ 0.5"]["value"] == 0.5
    assert rules["route.f1.account ≤ 0"]["status"] == "pass" and rules["route.f1.account ≤ 0"]["value"] == 0.0
    missing = rules["route.f1.nosuchroute ≥ 0.5"]
    assert missing["status"] == "fail" and missing["value"] is None and "not measured" in missing["detail"], missing
    assert suite["metrics"]["route.macro_f1"] == 7 / 24  # a headline metric of the run

    data = cli("routes", "--json").json()
    assert data["labels"] == ["(none)", "account", "billing", "handoff", "refunds"] and data["turns"] == 10
    assert data["accuracy"] == 5 / 10 and data["macro_f1"] == 7 / 24
    assert data["per_route"]["refunds"] == {"precision": 3 / 4, "recall": 3 / 5, "f1": 2 / 3, "support": 5}
    assert data["per_route"]["billing"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 4}
    assert data["per_route"]["account"] == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 1}
    assert data["per_route"]["handoff"] == {"precision": 0.0, "recall": None, "f1": 0.0, "support": 0}
    assert data["per_route"]["(none)"]["f1"] == 0.0
    text = cli("routes")
    assert text.code == 0 and "accuracy 50.0% over 10 turn(s); macro-F1 29.2% over 4 route(s)" in text.out, text
    assert "F1" in text.out and "66.7%" in text.out

    assert cli("report", "latest", "--html", "r.html").code == 0
    page = (project / "r.html").read_text()
    assert 'title="macro-F1">29.2%' in page and ">F1</th>" in page


def test_a_rule_on_route_f1_without_a_route_is_a_load_error(cli, project: Path) -> None:
    write(project / "router.py", ROUTER)
    write(project / "suites" / "demo.yaml", ROUTED + """
    gate:
      rules:
        - {metric: route.f1, min: 0.9}
    """)
    r = cli("validate", "--json")
    assert r.code == 2, r
    assert "'route.f1' needs a route: route.f1.<route>" in r.err, r
    assert "route.f1.refunds" in r.err and "route.macro_f1" in r.err, r


def test_macro_f1_follows_sklearn_on_a_hand_computed_example() -> None:
    from evalgate.store.metrics import _route_stats, macro_f1

    # y_true = [a, a, a, b, b, c], y_pred = [a, b, b, b, c, c]
    # sklearn f1_score(y_true, y_pred, average="macro", zero_division=0):
    #   a: P 1/1, R 1/3 → F1 1/2;  b: P 1/3, R 1/2 → F1 2/5;  c: P 1/2, R 1/1 → F1 2/3
    #   macro = (1/2 + 2/5 + 2/3) ÷ 3 = 47/90
    matrix = {"a": {"a": 1, "b": 2}, "b": {"b": 1, "c": 1}, "c": {"c": 1}}
    stats = _route_stats(matrix)
    assert [stats[r]["f1"] for r in "abc"] == [1 / 2, 2 / 5, 2 / 3]
    assert macro_f1(stats) == 47 / 90
    # a route predicted but never expected (d) and one expected but never predicted (e) count as 0, not left out:
    # y_true += [e], y_pred += [d] → macro = (1/2 + 2/5 + 2/3 + 0 + 0) ÷ 5 = 47/150
    matrix["e"] = {"d": 1}
    stats = _route_stats(matrix)
    assert stats["d"]["f1"] == 0.0 and stats["e"]["f1"] == 0.0 and stats["d"]["recall"] is None
    assert stats["e"]["precision"] is None
    assert macro_f1(stats) == 47 / 150
    assert macro_f1({}) is None
