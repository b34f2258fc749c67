"""Small inline SVG charts for the HTML report: no script, no external resource."""

from __future__ import annotations

import html
from typing import Any



def trend_svg(points: list[dict[str, Any]], key: str, *, percent: bool, width: int = 360, height: int = 90) -> str:
    """An inline SVG line chart of one headline metric over recent runs (escaped, no script)."""
    values = [(i, p[key]) for i, p in enumerate(points) if p.get(key) is not None]
    if not values:
        return ""
    pad = 8
    lo = 0.0 if percent else min(v for _, v in values)
    hi = 1.0 if percent else max(v for _, v in values)
    if hi == lo:
        hi = lo + 1
    n = max(len(points) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return pad + (width - 2 * pad) * i / n, height - pad - (height - 2 * pad) * (v - lo) / (hi - lo)

    coords = [xy(i, v) for i, v in values]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    def fmt(v: float) -> str:
        return f"{v:.1%}" if percent else f"{v:,.0f} ms"
    dots = []
    for (i, v), (x, y) in zip(values, coords):
        p = points[i]
        cls = "dot cur" if p["current"] else ("dot bad" if p["verdict"] not in ("pass", None) else "dot")
        title = html.escape(f"{p['run_id']} · {p['at']} · {fmt(v)} · {p['verdict'] or 'no verdict'}")
        dots.append(f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{4 if p["current"] else 3}"><title>{title}</title></circle>')
    label = html.escape(f"{key.replace('_', ' ')} over the last {len(points)} run(s): "
                        f"from {fmt(values[0][1])} to {fmt(values[-1][1])}")
    return (f'<svg class="trend" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{label}"><polyline class="line" points="{line}" fill="none"/>{"".join(dots)}</svg>')
