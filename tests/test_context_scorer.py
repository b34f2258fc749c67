"""Rank metrics on document ids, worked out by hand, and the context scorer that reports them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import write
from test_scorer_catalogue import _ctx

from evalgate.scorers import ScorerArgError, bind
from evalgate.scorers.context import grades_of, rank_metrics

GRADES = {"a": 3.0, "b": 1.0, "c": 2.0, "d": 1.0}
RANKING = ["a", "x", "b", "a", "c"]  # x is not relevant; the second a is a duplicate


def test_ndcg_at_3_step_by_step() -> None:
    m = rank_metrics(RANKING, GRADES, 3)
    # top 3: a (3), x (0), b (1)
    # DCG@3  = 3/log2(2) + 0/log2(3) + 1/log2(4)          = 3 + 0 + 0.5           = 3.5
    # IDCG@3 = grades sorted 3, 2, 1: 3/1 + 2/log2(3) + 1/2 = 3 + 1.26186 + 0.5    = 4.76186
    # nDCG@3 = 3.5 / 4.76186                                                       = 0.73501
    assert m.ndcg == pytest.approx(3.5 / (3 + 2 / math.log2(3) + 0.5)) and round(m.ndcg, 5) == 0.73501
    assert m.precision == pytest.approx(2 / 3)  # a and b of 3 positions
    assert m.recall == 0.5  # a and b of the 4 relevant a, b, c, d
    assert (m.hit, m.rr, m.found) == (1.0, 1.0, ("a", "b"))


def test_duplicates_take_a_slot_but_gain_once() -> None:
    m = rank_metrics(RANKING, GRADES, 5)
    # position 4 repeats a: gain 0; position 5 is c (2)
    # DCG@5  = 3.5 + 0/log2(5) + 2/log2(6)                 = 3.5 + 0.77371        = 4.27371
    # IDCG@5 = 3 + 2/log2(3) + 1/2 + 1/log2(5) (only 4 relevant) = 4.76186 + 0.43068 = 5.19254
    assert round(m.ndcg or 0, 5) == round(4.27371 / 5.19254, 5) == 0.82305
    assert m.precision == 3 / 5 and m.recall == 3 / 4  # a, b, c: the repeated a is not counted twice
    m = rank_metrics(["a", "a", "a"], grades_of(["a", "b"]), 3)
    assert (m.precision, m.recall, m.ndcg) == (pytest.approx(1 / 3), 0.5, pytest.approx(1 / (1 + 1 / math.log2(3))))


def test_fewer_than_k_results_count_missing_positions_as_not_relevant() -> None:
    m = rank_metrics(["x", "b"], grades_of(["b"]), 5)
    # precision@5 divides by 5, not by the 2 results; the first relevant is at position 2
    # nDCG@5 = (1/log2(3)) / (1/log2(2)) = 0.63093
    assert (m.precision, m.recall, m.hit, m.rr) == (0.2, 1.0, 1.0, 0.5)
    assert round(m.ndcg or 0, 5) == 0.63093
    m = rank_metrics([], grades_of(["b"]), 5)  # nothing retrieved
    assert (m.precision, m.recall, m.ndcg, m.hit, m.rr) == (0.0, 0.0, 0.0, 0.0, 0.0)


def test_no_relevant_documents_leave_recall_ndcg_and_rr_undefined() -> None:
    m = rank_metrics(["a", "b"], grades_of([]), 3)
    assert (m.precision, m.recall, m.ndcg, m.hit, m.rr) == (0.0, None, None, None, None)
    # grade 0 means judged not relevant
    assert grades_of({"a": 0, "b": 2}) == {"b": 2.0}


def test_context_scorer_ranks_used_items_by_rank_and_reports_metrics() -> None:
    items = [{"id": "kb/b", "rank": 2}, {"id": "kb/a", "rank": 1},
             {"id": "kb/secret", "rank": 3, "used": False, "excluded": "permission"}, {"id": "kb/c", "rank": 4}]
    check = bind("context", {"relevant": {"kb/a": 2, "kb/c": 1}, "k": 2})
    s = check.run_sync(_ctx(output="x", context=items))
    # used, by rank: kb/a, kb/b, kb/c. At k=2: kb/a only → recall 1/2, fails the default min recall 1
    assert not s.passed and s.value == 0.5
    assert s.explanation.startswith("recall@2 0.5 < 1 (recall@2 0.5, precision@2 0.5, nDCG@2 ")
    assert s.metrics is not None and s.metrics["recall@2"] == 0.5 and s.metrics["recall@3"] == 1.0
    assert s.metrics["mrr"] == 1.0 and set(s.metrics) >= {"ndcg@10", "hit@1", "precision@5"}
    assert s.detail == {"ranking": ["kb/a", "kb/b", "kb/c"], "found": ["kb/a"]}
    # over everything retrieved, the excluded document takes position 3
    s = bind("context", {"relevant": ["kb/c"], "ranking": "retrieved", "min": {"mrr": 0.25}}).run_sync(
        _ctx(output="x", context=items))
    assert s.passed and s.metrics is not None and s.metrics["mrr"] == 0.25
    s = bind("context", {"relevant": [], "must_exclude": "kb/secret"}).run_sync(_ctx(output="x", context=items))
    assert s.passed and "no relevant documents" in s.explanation and "recall@5" not in (s.metrics or {})


def test_context_arguments_are_checked() -> None:
    with pytest.raises(ScorerArgError, match="min: unknown metric 'recal'"):
        bind("context", {"relevant": ["a"], "min": {"recal": 1}})
    with pytest.raises(ScorerArgError, match="k must be at least 1"):
        bind("context", {"relevant": ["a"], "k": 0})
    with pytest.raises(ScorerArgError, match="min needs relevant"):
        bind("context", {"must_include": ["a"], "min": {"recall": 1}})


def test_rank_metrics_are_run_metrics_the_gate_can_use(cli, project: Path) -> None:
    # the demo bot uses kb/refund-policy on refund turns and nothing on smalltalk
    write(project / "suites" / "demo.yaml", """
        name: ctx
        target: {python: bot:respond}
        cases:
          - {id: r1, input: refund 5512, expect: {context: {relevant: [kb/refund-policy], k: 3}}}
          - {id: r2, input: refund 5513, expect: {context: {relevant: [kb/refund-policy, kb/other], min: {recall: 0.5}}}}
          - {id: s1, input: hello, expect: {context: {relevant: [], must_exclude: [kb/refund-policy]}}}
        gate:
          rules:
            - {metric: context.recall@5, min: 0.8}
            - {metric: context.mrr, min: 1}
            - {metric: context.ndcg@3, min: 0.5}
    """)
    r = cli("run", "--json")
    assert r.code == 1, r
    suite = r.json()["suites"][0]
    rules = {x["rule"]: x for x in suite["verdict"]["rules"]}
    # recall@5: r1 1.0, r2 0.5 (s1 has no relevant documents: left out) → mean 0.75
    assert rules["context.recall@5 ≥ 0.8"]["status"] == "fail" and rules["context.recall@5 ≥ 0.8"]["value"] == 0.75
    assert rules["context.mrr ≥ 1"]["status"] == "pass"
    # nDCG@3: r1 1.0; r2 1/(1 + 1/log2(3)) = 0.6131 → mean 0.8066
    assert rules["context.ndcg@3 ≥ 0.5"]["value"] == pytest.approx((1 + 1 / (1 + 1 / math.log2(3))) / 2)
    write(project / "suites" / "demo.yaml", "name: x\ntarget: {python: bot:respond}\n"
                                            "cases: [{id: a, input: hi, expect: {context: {relevant: [a]}}}]\n"
                                            "gate: {rules: [{metric: context.recal@5, min: 1}]}\n")
    r = cli("validate")
    assert r.code == 2 and "unknown statistic 'recal@5' for scorer context" in r.err and "suites/demo.yaml:4" in r.err, r
