"""The report's SVG charts: scales, labels, unknown values and escaping; parsed as XML."""

import xml.etree.ElementTree as ET

from orchestrator.report import labels, svg, tables

NS = "{http://www.w3.org/2000/svg}"


def _parse(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == NS + "svg" and int(root.get("width")) == svg.WIDTH
    return root


def test_nice_ticks_cover_the_top_with_round_steps():
    assert svg.nice_ticks(12698.7) == [0, 5000, 10000, 15000]
    assert svg.nice_ticks(0.645) == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert svg.nice_ticks(5.0) == [0, 1, 2, 3, 4, 5]
    assert svg.nice_ticks(0.0) == [0.0, 1.0]


def test_grouped_bars_scale_and_show_unknown():
    text = svg.grouped_bars(
        [("job <a&b>", [("whole", 50.0), ("core", 100.0), ("other", None)])], "img/s", "t"
    )
    root = _parse(text)
    bars = [r for r in root.iter(NS + "rect") if r.find(NS + "title") is not None]
    widths = {r.find(NS + "title").text.split(":")[0]: float(r.get("width")) for r in bars}
    assert widths["core"] == 2 * widths["whole"] == svg.PLOT_W  # 100 is the top tick: the full plot width
    texts = [t.text for t in root.iter(NS + "text")]
    assert "job <a&b>" in texts and "other: unknown" in texts and "100" in texts and "50.0" in texts


def test_grouped_bars_draw_an_error_bar_over_the_bars_given_a_range():
    ranges = {("job", "whole"): (40.0, 120.0, "min..max over R = 3 passes")}
    root = _parse(svg.grouped_bars([("job", [("whole", 50.0), ("core", 100.0)])], "img/s", "t", ranges))
    (bar,) = [g for g in root.iter(NS + "g") if g.get("class") == "range"]
    assert bar.find(NS + "title").text == "whole: min..max over R = 3 passes 40.0..120 img/s"
    line = bar.find(NS + "line")
    scale = svg.PLOT_W / svg.nice_ticks(120.0)[-1]  # the top tick covers the range's high end
    assert float(line.get("x1")) == round(svg.LABEL_W + 40 * scale, 1) and float(line.get("x2")) == round(
        svg.LABEL_W + 120 * scale, 1
    )


def test_used_of_total_and_timelines():
    root = _parse(svg.used_of_total([("a", 1.5, 40.0), ("b", None, None)], "GiB", "m"))
    texts = [t.text for t in root.iter(NS + "text")]
    assert "1.5 / 40.0 GiB" in texts and "unknown / unknown GiB" in texts
    root = _parse(svg.timelines([("j", [("build", None), ("start", 2.0), ("infer", 6.0)])], "t"))
    segments = {
        r.find(NS + "title").text: float(r.get("width"))
        for r in root.iter(NS + "rect")
        if r.find(NS + "title") is not None
    }
    assert segments["infer: 6.0 s"] == 3 * segments["start: 2.0 s"]
    assert "8.0 s; unknown: build" in [t.text for t in root.iter(NS + "text")]


def test_time_series_draws_lines_over_the_shaded_windows_and_says_when_a_panel_has_none():
    panels = [
        ("job <a>", [("busy", [(0.5, 100.0), (5.0, 50.0), (10.0, 150.0)])], [("infer", 2.5, 7.5)]),
        ("empty", [("busy", [])], []),
    ]
    root = _parse(svg.time_series(panels, "%", 100.0, "cpu"))
    (line,) = [p for p in root.iter(NS + "polyline") if p.get("points")]
    points = [tuple(float(v) for v in p.split(",")) for p in line.get("points").split()]
    assert [x for x, _ in points] == [svg.LABEL_W + svg.PLOT_W * t / 10 for t in (0.5, 5.0, 10.0)]
    top, middle, clipped = (y for _, y in points)
    assert top == clipped and middle - top == svg.PANEL_H / 2  # above the top is drawn at the top
    (window,) = [r for r in root.iter(NS + "rect") if r.get("fill") == svg.SPAN_FILL]
    assert float(window.get("width")) == svg.PLOT_W / 2
    assert window.find(NS + "title").text == "infer: 2.5-7.5 s"
    texts = [t.text for t in root.iter(NS + "text")]
    assert "job <a>" in texts and "infer" in texts and "no samples" in texts and "100 %" in texts


def test_labels_cover_every_column_in_both_languages():
    for lang in labels.LANGS:
        assert [k for k, _ in labels.result_columns(lang)] == [k for k, _ in tables.RESULT_COLUMNS]
        assert [k for k, _ in labels.env_columns(lang)] == [k for k, _ in tables.ENV_COLUMNS]
    zh = dict(labels.result_columns("zh"))
    assert zh["precision"] == "数据精度" and zh["bs"] == "批尺寸" and zh["p_infer_core"] == "*推理计算吞吐量"
    assert all(any("\u4e00" <= c <= "\u9fff" for c in title) for _, title in labels.result_columns("zh"))
    assert labels.env_label("driver", "zh") == "加速卡驱动版本" and labels.word("how", "en") == "How measured"


def test_figures_read_without_exponents_and_with_thousands_separated():
    shown = [svg.fmt(v) for v in (12698.7, 157.2, 7.63, 0.64, 1.8e-05, 0.0, -2500.0)]
    assert shown == ["12,699", "157", "7.6", "0.64", "0.000018", "0.0", "-2,500"]


def test_xy_lines_put_batch_sizes_on_a_log_axis_with_intervals():
    lines = [("tool <a>", [(1.0, 10.0, 8.0, 12.0), (4.0, 40.0, None, None), (16.0, 20.0, 19.0, 21.0)])]
    root = _parse(svg.xy_lines(lines, "batch size", "img/s", "sweep"))
    xs = [float(c.get("cx")) for c in root.iter(NS + "circle")]
    assert len(xs) == 3 and abs((xs[1] - xs[0]) - (xs[2] - xs[1])) < 0.2  # 1, 4, 16: equal steps
    assert len([ln for ln in root.iter(NS + "line") if ln.get("class") == "range"]) == 2  # 4 has none
    texts = [t.text for t in root.iter(NS + "text")]
    assert "tool <a>" in texts and "batch size" in texts and "40.0" in texts and "16" in texts
