"""Named, append-only schema migrations, recorded in ``schema_migrations``.

Each migration runs in its own transaction (a new store gets them all in
one). Never edit a migration that has shipped: add a new one.
``SCHEMA_VERSION`` is the number of migrations.

Results tables have no primary-key constraints: the runner writes each
(run, case, repeat, turn) once by construction, and DuckDB would otherwise
load the whole key index on every batch, making long runs quadratic.
"""

from __future__ import annotations

from typing import Any

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", """
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            suite VARCHAR NOT NULL,
            suite_path VARCHAR,
            suite_hash VARCHAR,
            config_hash VARCHAR,
            target VARCHAR,
            status VARCHAR NOT NULL,          -- running | completed | interrupted | failed
            verdict VARCHAR,                  -- pass | fail | error
            exit_code INTEGER,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            git_commit VARCHAR,
            git_branch VARCHAR,
            git_dirty BOOLEAN,
            evalgate_version VARCHAR,
            repeat INTEGER NOT NULL DEFAULT 1,
            selected_tags VARCHAR[],
            cases_total INTEGER,
            cases_done INTEGER DEFAULT 0,
            turns_done INTEGER DEFAULT 0,
            errors INTEGER DEFAULT 0,
            bad_lines INTEGER DEFAULT 0,
            options JSON,
            summary JSON
        );
        CREATE TABLE cases (
            run_id VARCHAR NOT NULL,
            seq INTEGER NOT NULL,
            case_id VARCHAR NOT NULL,
            repeat INTEGER NOT NULL,
            tags VARCHAR[],
            user_id VARCHAR,
            user_groups VARCHAR[],
            session_id VARCHAR,
            source VARCHAR,
            critical BOOLEAN,
            passed BOOLEAN,
            errored BOOLEAN,
            error VARCHAR,
            n_turns INTEGER,
            elapsed_ms DOUBLE,
            routes VARCHAR[]
        );
        CREATE TABLE turns (
            run_id VARCHAR NOT NULL,
            case_id VARCHAR NOT NULL,
            repeat INTEGER NOT NULL,
            turn INTEGER NOT NULL,
            input VARCHAR,
            route VARCHAR,
            output VARCHAR,
            state_in JSON,
            state JSON,
            elapsed_ms DOUBLE,
            latency_ms DOUBLE,
            passed BOOLEAN,
            error VARCHAR,
            trace JSON,
            recorded JSON,
            changes JSON
        );
        CREATE TABLE scores (
            run_id VARCHAR NOT NULL,
            case_id VARCHAR NOT NULL,
            repeat INTEGER NOT NULL,
            turn INTEGER NOT NULL,
            scorer VARCHAR NOT NULL,
            passed BOOLEAN,
            value DOUBLE,
            explanation VARCHAR,
            error VARCHAR
        );
    """),
    ("0002_turn_usage", """
        ALTER TABLE turns ADD COLUMN input_tokens BIGINT;
        ALTER TABLE turns ADD COLUMN output_tokens BIGINT;
        ALTER TABLE turns ADD COLUMN cost_usd DOUBLE;
    """),
    ("0003_baselines", """
        CREATE TABLE baselines (
            name VARCHAR NOT NULL,
            suite VARCHAR NOT NULL,
            run_id VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (name, suite)
        );
    """),
    ("0004_score_metrics", """
        ALTER TABLE scores ADD COLUMN metrics JSON;   -- named values: {"recall@5": 0.5, "leaks": 1}
        ALTER TABLE scores ADD COLUMN detail JSON;    -- votes, leaked ids, expected route, ...
    """),
    ("0005_case_meta", """
        ALTER TABLE cases ADD COLUMN meta JSON;
    """),
    ("0006_feedback", """
        CREATE TABLE feedback (
            feedback_id VARCHAR PRIMARY KEY,  -- derived from the record's content: importing again adds nothing
            trace_id VARCHAR,
            case_id VARCHAR,
            turn INTEGER,
            rating VARCHAR,
            correction JSON,
            note VARCHAR,
            author VARCHAR,
            given_at VARCHAR,                 -- when the feedback was given, as the file says
            source VARCHAR,                   -- file:line it was imported from
            imported_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            promoted_case VARCHAR,
            promoted_at TIMESTAMP
        );
    """),
    ("0007_history", """
        ALTER TABLE cases ADD COLUMN digest VARCHAR;      -- what the case's turns did: equal digests, equal answers
        ALTER TABLE cases ADD COLUMN variant_of VARCHAR;  -- the conversation this case is a variant of
        ALTER TABLE runs ADD COLUMN parent_run VARCHAR;   -- set on a confirmation run: the run it confirms
        ALTER TABLE runs ADD COLUMN git_diff VARCHAR;     -- a hash of the uncommitted changes (dirty trees only)
    """),
    ("0008_turn_tags", """
        ALTER TABLE turns ADD COLUMN tags VARCHAR[];       -- the turn's own tags (written, or from a gold file)
        ALTER TABLE cases ADD COLUMN turn_tags VARCHAR[];  -- every tag of its turns, as routes lists their routes
    """),
    ("0009_service_spans", """
        -- the system's own OpenTelemetry spans for an eval turn (evalgate traces join), found by the trace id the
        -- turn's call carried in its traceparent
        CREATE TABLE service_spans (
            run_id VARCHAR NOT NULL,
            case_id VARCHAR NOT NULL,
            repeat INTEGER NOT NULL,
            turn INTEGER NOT NULL,
            trace_id VARCHAR NOT NULL,
            span_id VARCHAR NOT NULL,
            parent_id VARCHAR,
            name VARCHAR,
            kind VARCHAR,               -- LLM, RETRIEVER, TOOL, CHAIN, ... as the OTLP import reads them
            service VARCHAR,            -- the resource's service.name
            start_ns BIGINT,
            duration_ms DOUBLE,
            error VARCHAR,
            attributes JSON,            -- redacted, as an import's
            joined_at TIMESTAMP DEFAULT current_timestamp
        );
    """),
    ("0010_first_token", """
        -- time to the first streamed text, a column of its own: the first_token metrics no longer read every trace
        ALTER TABLE turns ADD COLUMN first_token_ms DOUBLE;
        UPDATE turns SET first_token_ms = TRY_CAST(json_extract_string(trace, '$.latency_ms.first_token') AS DOUBLE)
            WHERE contains(trace, '"first_token"');
    """),
]

SCHEMA_VERSION = len(MIGRATIONS)


def applied(con: Any) -> list[str]:
    """Names of the migrations this database has, in order."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
    return [r[0] for r in con.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()]


def migrate(con: Any, upto: int | None = None) -> list[str]:
    """Apply missing migrations (the first ``upto`` only, for tests); returns their names."""
    from ..errors import RunError

    done = applied(con)
    known = [name for name, _ in MIGRATIONS]
    newer = [n for n in done if n not in known]
    if newer:
        raise RunError(f"this store was written by a newer evalgate (it has migration {newer[-1]})",
                       hint="upgrade evalgate, or use another --db")
    if not done and upto is None:  # a new store: every migration in one transaction (one commit instead of one each)
        _apply(con, MIGRATIONS)
        return [name for name, _ in MIGRATIONS]
    ran = []
    for name, sql in MIGRATIONS[:upto]:
        if name not in done:
            _apply(con, [(name, sql)])
            ran.append(name)
    return ran


def _apply(con: Any, migrations: list[tuple[str, str]]) -> None:
    """Run ``migrations`` and record them, in one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        for name, sql in migrations:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (name) VALUES (?)", [name])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
