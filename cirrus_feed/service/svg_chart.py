"""A stacked bar chart as an SVG string, rendered on the server (no JavaScript).

Every text that reaches the SVG passes through ``html.escape``; each bar segment carries a
``<title>`` (the browser's tooltip) and ``data-`` attributes that tests can read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 120, 12, 28


def stacked_bars(
    bars: Sequence[tuple[str, Mapping[str, int]]],
    colors: Mapping[str, str],
    *,
    title: str,
) -> str:
    """``bars`` are (x label, series → value); series drawn bottom up in ``colors`` order,
    with a legend. Labels are shown for the first, middle and last bar only."""
    peak = max((sum(values.values()) for _, values in bars), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(bars))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
        'stroke="#888"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    shown = {0, len(bars) // 2, len(bars) - 1}
    for i, (label, values) in enumerate(bars):
        x = LEFT + i * step
        y = float(TOP + plot_h)
        for series, color in colors.items():
            value = values.get(series, 0)
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            parts.append(
                f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" width="{max(1.0, step - 2):.1f}" '
                f'height="{h:.1f}" fill="{escape(color)}" data-series="{escape(series)}" '
                f'data-value="{value}"><title>{escape(label)}: {value} '
                f"{escape(series)}</title></rect>"
            )
        if i in shown:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
                f'font-size="11">{escape(label)}</text>'
            )
    for row, (series, color) in enumerate(colors.items()):
        y = TOP + 14 * row
        parts.append(
            f'<rect x="{WIDTH - RIGHT + 12}" y="{y}" width="10" height="10" '
            f'fill="{escape(color)}"/><text x="{WIDTH - RIGHT + 28}" y="{y + 9}" '
            f'font-size="11">{escape(series)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
