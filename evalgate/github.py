"""The pull-request comment: one per pull request, kept up to date, found by a hidden marker.

It uses only what a workflow gives a job: ``GITHUB_TOKEN`` (with ``pull-requests: write``), ``GITHUB_REPOSITORY``,
``GITHUB_EVENT_PATH`` (the pull request's number), ``GITHUB_API_URL``, and for the link to the run's artifacts
``GITHUB_SERVER_URL`` and ``GITHUB_RUN_ID``. A token that may not comment (a fork's read-only token) is not a
failure: the summary goes to the job's step summary with a notice instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import UsageError

MARKER = "<!-- evalgate: release gate -->"
MAX_BODY = 65_536
"""GitHub's limit on a comment's body, in characters."""


def comment_body(summary: str, run_url: str | None, limit: int = MAX_BODY) -> str:
    """The marker, the summary, the link to the run; cut at a line to fit ``limit``, saying how much was left out."""
    head = f"{MARKER}\n"
    tail = f"\n[The run, its HTML report and results]({run_url})\n" if run_url else ""
    lines = summary.rstrip("\n").split("\n")
    body = head + "\n".join(lines) + "\n" + tail
    if len(body) <= limit:
        return body
    kept: list[str] = []
    size = len(head) + len(tail) + 80
    for line in lines:
        if size + len(line) + 1 > limit:
            break
        kept.append(line)
        size += len(line) + 1
    more = len(lines) - len(kept)
    return head + "\n".join(kept) + f"\n\n… and {more} more line(s): see the run's summary and artifacts.\n" + tail


def _pull_number(env: dict[str, str]) -> int | None:
    if env.get("EVALGATE_PR_NUMBER"):
        return int(env["EVALGATE_PR_NUMBER"])
    path = env.get("GITHUB_EVENT_PATH")
    if not path or not Path(path).is_file():
        return None
    event = json.loads(Path(path).read_text(encoding="utf-8"))
    pr = event.get("pull_request") or {}
    number = pr.get("number") or event.get("number")
    return int(number) if number else None


def post_comment(summary: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Create or update the pull request's evalgate comment; returns what was done (``created``, ``updated``,
    ``summary`` when the token may not comment, ``skipped`` outside a pull request)."""
    import httpx

    env = dict(os.environ if env is None else env)
    number = _pull_number(env)
    if number is None:
        return {"action": "skipped", "why": "not a pull request (no number in GITHUB_EVENT_PATH)"}
    token, repo = env.get("GITHUB_TOKEN"), env.get("GITHUB_REPOSITORY")
    if not token or not repo:
        raise UsageError("GITHUB_TOKEN and GITHUB_REPOSITORY are needed to comment",
                         hint="in a workflow: env: {GITHUB_TOKEN: ${{ github.token }}} and permissions: pull-requests: write")
    api = env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    run_url = (f"{env['GITHUB_SERVER_URL'].rstrip('/')}/{repo}/actions/runs/{env['GITHUB_RUN_ID']}"
               if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_RUN_ID") else None)
    body = comment_body(summary, run_url)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28"}
    with httpx.Client(base_url=api, headers=headers, timeout=30, trust_env=False) as client:
        try:
            existing = None
            page = 1
            while existing is None:
                r = client.get(f"/repos/{repo}/issues/{number}/comments", params={"per_page": 100, "page": page})
                r.raise_for_status()
                comments = r.json()
                existing = next((c for c in comments if MARKER in (c.get("body") or "")), None)
                if len(comments) < 100:
                    break
                page += 1
            if existing is not None:
                r = client.patch(f"/repos/{repo}/issues/comments/{existing['id']}", json={"body": body})
                r.raise_for_status()
                return {"action": "updated", "id": existing["id"], "url": r.json().get("html_url"), "chars": len(body)}
            r = client.post(f"/repos/{repo}/issues/{number}/comments", json={"body": body})
            r.raise_for_status()
            return {"action": "created", "id": r.json().get("id"), "url": r.json().get("html_url"), "chars": len(body)}
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in (403, 404):  # a fork's read-only token: the step summary instead
                return _to_step_summary(env, body, f"cannot comment on pull request #{number} "
                                                   f"(HTTP {exc.response.status_code}: the token may not write)")
            raise UsageError(f"GitHub answered HTTP {exc.response.status_code} to {exc.request.method} "
                             f"{exc.request.url.path}") from None
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot reach GitHub at {api}: {type(exc).__name__}") from None


def _to_step_summary(env: dict[str, str], body: str, why: str) -> dict[str, Any]:
    path = env.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"> **Note:** {why}; the summary is here instead.\n\n{body}\n")
    return {"action": "summary", "why": why, "path": path}
