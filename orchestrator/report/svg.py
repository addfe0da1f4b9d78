"""Small, dependency-free SVG charts for the HTML report: grouped bars, used/total bars, stacked timelines.

Every chart is horizontal (one row per job, labels on the left), scales linearly from zero, prints
each value at its bar and shows a missing value as "unknown" rather than a bar.
"""

import math
from html import escape
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

Bar = Tuple[str, Optional[float]]  # (series or segment name, value)
Group = Tuple[str, Sequence[Bar]]  # (row label, its bars)
#: (row label, series name) -> (low, high, what the range is): an error bar over that bar
Ranges = Mapping[Tuple[str, str], Tuple[float, float, str]]

LABEL_W = 300
PLOT_W = 620
RIGHT_PAD = 90
BAR_H = 14
GAP = 3
GROUP_GAP = 14
AXIS_H = 28
WIDTH = LABEL_W + PLOT_W + RIGHT_PAD

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#2f4b7c",
    "#8cd17d",
)


def fmt(value: float) -> str:
    """A figure with as many digits as its size needs, thousands separated, never in exponent form
    ("12,699", "157", "7.6", "0.64", "0.000018")."""
    size = abs(value)
    if size >= 100:
        return "{:,.0f}".format(value)
    if size >= 1 or size == 0:
        return "%.1f" % value
    digits = 2 - math.floor(math.log10(size))  # three significant digits
    return ("%.*f" % (digits, value)).rstrip("0").rstrip(".")


def _value(value: Optional[float]) -> str:
    return "unknown" if value is None else fmt(value)


def nice_ticks(top: float, count: int = 5) -> List[float]:
    """Round tick values from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [round(i * step, 12) for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def colours(names: Sequence[str]) -> Dict[str, str]:
    """A fixed colour per name, in order of first appearance."""
    out: Dict[str, str] = {}
    for name in names:
        if name not in out:
            out[name] = PALETTE[len(out) % len(PALETTE)]
    return out


def _text(x: float, y: float, content: str, anchor: str = "start", cls: str = "") -> str:
    klass = ' class="%s"' % cls if cls else ""
    return '<text x="%.1f" y="%.1f" text-anchor="%s"%s>%s</text>' % (x, y, anchor, klass, escape(content))


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str = "") -> str:
    tip = "<title>%s</title>" % escape(title) if title else ""
    return '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">%s</rect>' % (
        x,
        y,
        max(w, 0.0),
        h,
        fill,
        tip,
    )


def _legend(names: Dict[str, str]) -> Tuple[List[str], float]:
    """Legend entries, wrapped over lines; (svg parts, y where the plot starts)."""
    parts, x, y = [], 8.0, 16.0
    for name, colour in names.items():
        width = 24 + 7.2 * len(name)
        if x + width > WIDTH:
            x, y = 8.0, y + 20
        parts.append(_rect(x, y - 10, 12, 12, colour))
        parts.append(_text(x + 16, y, name))
        x += width
    return parts, y + 18


def _axis(top: float, y: float, ticks: List[float], unit: str) -> List[str]:
    parts = []
    for tick in ticks:
        x = LABEL_W + PLOT_W * tick / ticks[-1]
        parts.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/>' % (x, top, x, y))
        parts.append(_text(x, y + 14, fmt(tick), "middle", "tick"))
    parts.append(_text(LABEL_W + PLOT_W + 28, y + 14, unit, "start", "tick"))
    return parts


def _svg(height: float, body: List[str], title: str) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="%d" height="%d" viewBox="0 0 %d %d" '
        'role="img"><title>%s</title>%s</svg>' % (WIDTH, height, WIDTH, height, escape(title), "".join(body))
    )


def _error_bar(low: float, high: float, y: float, scale: float, title: str) -> str:
    """A range drawn across a bar at ``y``: a line from ``low`` to ``high`` with a tick at each end."""
    x1, x2, mid = LABEL_W + max(low, 0.0) * scale, LABEL_W + high * scale, y + BAR_H / 2  # axis from 0
    line = '<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="range"/>'
    parts = [line % (x1, mid, x2, mid)] + [line % (x, y + 2, x, y + BAR_H - 2) for x in (x1, x2)]
    return '<g class="range"><title>%s</title>%s</g>' % (escape(title), "".join(parts))


def grouped_bars(groups: Sequence[Group], unit: str, title: str, ranges: Optional[Ranges] = None) -> str:
    """One block of bars per group, one bar per series, a legend of the series; an error bar over each bar
    ``ranges`` has (its low and high, and what they are)."""
    ranges = ranges or {}
    names = colours([name for _, bars in groups for name, _ in bars])
    values = [v for _, bars in groups for _, v in bars if v is not None]
    values += [high for _, high, _ in ranges.values()]
    ticks = nice_ticks(max(values) if values else 0.0)
    body, top = _legend(names)
    y = top + 4
    for label, bars in groups:
        body.append(_text(LABEL_W - 8, y + BAR_H - 3, label, "end", "label"))
        for name, value in bars:
            if value is None:
                body.append(_text(LABEL_W + 4, y + BAR_H - 3, "%s: unknown" % name, "start", "unknown"))
            else:
                w = PLOT_W * value / ticks[-1]
                body.append(_rect(LABEL_W, y, w, BAR_H, names[name], "%s: %s %s" % (name, fmt(value), unit)))
                end = w
                if (label, name) in ranges:
                    low, high, what = ranges[label, name]
                    scale = PLOT_W / ticks[-1]
                    body.append(
                        _error_bar(
                            low, high, y, scale, "%s: %s %s..%s %s" % (name, what, fmt(low), fmt(high), unit)
                        )
                    )
                    end = max(w, high * scale)
                body.append(_text(LABEL_W + end + 4, y + BAR_H - 3, fmt(value), "start", "value"))
            y += BAR_H + GAP
        y += GROUP_GAP
    body += _axis(top, y, ticks, unit)
    return _svg(y + AXIS_H, body, title)


def used_of_total(rows: Sequence[Tuple[str, Optional[float], Optional[float]]], unit: str, title: str) -> str:
    """Per row a light bar for the total and a dark bar for the part used, labelled used / total."""
    values = [v for _, used, total in rows for v in (used, total) if v is not None]
    ticks = nice_ticks(max(values) if values else 0.0)
    body, top = _legend({"used": PALETTE[0], "total": "#d5dbe3"})
    y = top + 4
    for label, used, total in rows:
        body.append(_text(LABEL_W - 8, y + BAR_H + 1, label, "end", "label"))
        if total is not None:
            body.append(_rect(LABEL_W, y, PLOT_W * total / ticks[-1], BAR_H + 4, "#d5dbe3", "total"))
        if used is not None:
            body.append(_rect(LABEL_W, y + 2, PLOT_W * used / ticks[-1], BAR_H, PALETTE[0], "used"))
        end = max(v for v in (used, total, 0.0) if v is not None)
        text = "%s / %s %s" % (_value(used), _value(total), unit)
        body.append(_text(LABEL_W + PLOT_W * end / ticks[-1] + 4, y + BAR_H + 1, text, "start", "value"))
        y += BAR_H + 4 + GROUP_GAP
    body += _axis(top, y, ticks, unit)
    return _svg(y + AXIS_H, body, title)


def timelines(rows: Sequence[Group], title: str) -> str:
    """Per row the segments laid end to end (seconds); unknown segments are listed after the bar."""
    names = colours([name for _, segments in rows for name, _ in segments])
    totals = [sum(v for _, v in segments if v is not None) for _, segments in rows]
    ticks = nice_ticks(max(totals) if totals else 0.0)
    body, top = _legend(names)
    y = top + 4
    for (label, segments), total in zip(rows, totals):
        body.append(_text(LABEL_W - 8, y + BAR_H + 1, label, "end", "label"))
        x = float(LABEL_W)
        for name, value in segments:
            if value is None:
                continue
            w = PLOT_W * value / ticks[-1]
            body.append(_rect(x, y, w, BAR_H + 4, names[name], "%s: %s s" % (name, fmt(value))))
            x += w
        missing = [name for name, value in segments if value is None]
        note = "%s s" % fmt(total) + ("; unknown: " + ", ".join(missing) if missing else "")
        body.append(_text(x + 4, y + BAR_H + 1, note, "start", "value"))
        y += BAR_H + 4 + GROUP_GAP
    body += _axis(top, y, ticks, "s")
    return _svg(y + AXIS_H, body, title)


Point = Tuple[float, float]  # (seconds, value)
Span = Tuple[str, float, float]  # (name, start s, end s)
Panel = Tuple[str, Sequence[Tuple[str, Sequence[Point]]], Sequence[Span]]  # (row label, its lines, its spans)
PANEL_H = 90
SPAN_FILL = "#eef2f7"


def time_series(panels: Sequence[Panel], unit: str, top: float, title: str) -> str:
    """One panel per row: its lines over seconds (from 0, each panel to its own end), values from 0 to
    ``top`` ``unit``, its spans (stage windows) shaded and named behind them; a panel without points says
    so."""
    names = colours([name for _, lines, _ in panels for name, _ in lines])
    body, y = _legend(names)
    for panel in panels:
        body += _panel(panel, names, y, unit, top)
        y += PANEL_H + AXIS_H + GROUP_GAP
    return _svg(y, body, title)


def _panel(panel: Panel, names: Dict[str, str], y: float, unit: str, top: float) -> List[str]:
    """One panel of ``time_series`` whose plot starts at ``y``."""
    label, lines, spans = panel
    ends = [t for _, points in lines for t, _ in points] + [end for _, _, end in spans]
    span = nice_ticks(max(ends) if ends else 0.0)[-1]
    ticks = nice_ticks(span)
    xs = [LABEL_W + PLOT_W * tick / span for tick in ticks]

    def at(t: float, value: float) -> Tuple[float, float]:
        return LABEL_W + PLOT_W * max(t, 0.0) / span, y + PANEL_H * (1 - min(max(value, 0.0), top) / top)

    body = [_text(LABEL_W - 8, y + PANEL_H / 2, label, "end", "label")]
    for name, start, end in spans:
        left, right = at(start, 0)[0], at(end, 0)[0]
        body.append(
            _rect(left, y, right - left, PANEL_H, SPAN_FILL, "%s: %s-%s s" % (name, fmt(start), fmt(end)))
        )
        body.append(_text(left + 3, y + 12, name, "start", "tick"))
    for value in (0.0, top / 2, top):
        line_y = at(0, value)[1]
        grid = '<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="grid"/>'
        body.append(grid % (LABEL_W, line_y, WIDTH - RIGHT_PAD, line_y))
        body.append(_text(LABEL_W + PLOT_W + 4, line_y + 4, "%s %s" % (fmt(value), unit), "start", "tick"))
    for name, points in lines:
        path = " ".join("%.1f,%.1f" % at(t, v) for t, v in points)
        body.append(
            '<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"><title>%s</title></polyline>'
            % (path, names[name], escape(name))
        )
    if not any(points for _, points in lines):
        body.append(_text(LABEL_W + 4, y + PANEL_H / 2, "no samples", "start", "unknown"))
    for tick, x in zip(ticks, xs):
        body.append(_text(x, y + PANEL_H + 14, fmt(tick), "middle", "tick"))
    body.append(_text(LABEL_W + PLOT_W + 28, y + PANEL_H + 14, "s", "start", "tick"))
    return body


#: a run of a latency-throughput chart: (x, y, whether the run was good, its tooltip)
RunPoint = Tuple[float, float, bool, str]


def latency_throughput(
    series: Sequence[Tuple[str, Sequence[RunPoint]]],
    x_unit: str,
    y_unit: str,
    bound: Optional[float],
    title: str,
) -> str:
    """One line of points per series (sorted by x): a filled point for a good run, a hollow one for a bad
    run; a dashed line at ``bound`` on the y axis (the latency bound), where given."""
    names = colours([name for name, _ in series])
    legend, top = _legend(names)
    height = 260.0
    xs = [p[0] for _, points in series for p in points] or [1.0]
    ys = [p[1] for _, points in series for p in points] + ([bound] if bound else []) or [1.0]
    x_ticks, y_ticks = nice_ticks(max(xs)), nice_ticks(max(ys))
    left, bottom = float(LABEL_W), top + height

    def at(x: float, y: float) -> Tuple[float, float]:
        return left + PLOT_W * x / x_ticks[-1], bottom - height * y / y_ticks[-1]

    parts = legend + _axis(top, bottom, x_ticks, x_unit)
    for tick in y_ticks:
        y = at(0, tick)[1]
        parts.append(_text(left - 6, y + 4, fmt(tick), "end", "tick"))
    parts.append(_text(left - 6, top - 4, y_unit, "end", "tick"))
    if bound:
        y = at(0, bound)[1]
        parts.append(
            '<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="bound"/>' % (left, y, left + PLOT_W, y)
        )
    for name, points in series:
        colour, ordered = names[name], sorted(points)
        where = [at(x, y) for x, y, _, _ in ordered]
        if len(where) > 1:
            path = " ".join("%.1f,%.1f" % xy for xy in where)
            parts.append('<polyline points="%s" fill="none" stroke="%s"/>' % (path, colour))
        for (x, y), (_, _, good, tip) in zip(where, ordered):
            fill = colour if good else "white"
            parts.append(
                '<circle cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="%s"><title>%s</title></circle>'
                % (x, y, fill, colour, escape(tip))
            )
    return _svg(bottom + AXIS_H, parts, title)


#: a point of a line: (x, y, low, high): low and high the y's interval (None: none)
XYPoint = Tuple[float, float, Optional[float], Optional[float]]
XY_H = 220


def xy_lines(lines: Sequence[Tuple[str, Sequence[XYPoint]]], x_name: str, unit: str, title: str) -> str:
    """Lines of y over x (x on a log2 axis: batch sizes), y from 0; each point marked and valued, its
    interval drawn as a vertical bar where it has one; a legend of the lines."""
    names = colours([name for name, _ in lines])
    xs = sorted({x for _, points in lines for x, _, _, _ in points})
    tops = [max(y, high or 0.0) for _, points in lines for _, y, _, high in points]
    ticks = nice_ticks(max(tops) if tops else 0.0)
    body, top = _legend(names)
    top += 8
    low_x, high_x = math.log2(xs[0]) if xs else 0.0, math.log2(xs[-1]) if xs else 1.0
    span = (high_x - low_x) or 1.0

    def at(x: float, y: float) -> Tuple[float, float]:
        share = (math.log2(x) - low_x) / span if len(xs) > 1 else 0.5
        return LABEL_W + 20 + (PLOT_W - 40) * share, top + XY_H * (1 - max(y, 0.0) / ticks[-1])

    for tick in ticks:
        y = at(xs[0] if xs else 1.0, tick)[1]
        grid = '<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="grid"/>'
        body.append(grid % (LABEL_W, y, LABEL_W + PLOT_W, y))
        body.append(_text(LABEL_W - 6, y + 4, fmt(tick), "end", "tick"))
    body.append(_text(LABEL_W - 6, top - 10, unit, "end", "tick"))
    for x in xs:
        body.append(_text(at(x, 0)[0], top + XY_H + 16, "%g" % x, "middle", "tick"))
    body.append(_text(LABEL_W + PLOT_W + 8, top + XY_H + 16, x_name, "start", "tick"))
    for name, points in lines:
        ordered = sorted(points)
        path = " ".join("%.1f,%.1f" % at(x, y) for x, y, _, _ in ordered)
        body.append(
            '<polyline points="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></polyline>'
            % (path, names[name], escape(name))
        )
        for x, y, low, high in ordered:
            px, py = at(x, y)
            if low is not None and high is not None:
                line = '<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="range"/>'
                body.append(line % (px, at(x, low)[1], px, at(x, high)[1]))
            tip = "%s, %s %g: %s %s" % (name, x_name, x, fmt(y), unit)
            body.append(
                '<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s</title></circle>'
                % (px, py, names[name], escape(tip))
            )
            body.append(_text(px + 6, py - 6, fmt(y), "start", "value"))
    return _svg(top + XY_H + AXIS_H, body, title)
