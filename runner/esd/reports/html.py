"""Self-contained HTML for every esd report: one page template, inline CSS, tables and SVG bar charts.

Nothing here loads anything from elsewhere (no web fonts, scripts, images or style sheets), so a report
opens the same from a ledger directory, an e-mail attachment, an AWX artifact or a CI archive. Other
report kinds (the rollout's distribution report, for one) build their pages from the same pieces::

    from esd.reports import html
    body = html.section("Waves", html.bar_chart([("beta", 3, "ok"), ("wave 1", 7, "ok")], unit="hosts"))
    page = html.page("Distribution report", body, subtitle="change order CO-1")

Every function returns an HTML string; every value passed in is escaped here (use :class:`Markup`
for HTML that is already safe, e.g. the output of another helper).
"""

from __future__ import annotations

import html as _html

# Tones map outcomes to colours; the same words are used by every report.
TONES = ("ok", "fail", "warn", "info", "muted")
_TONE_COLOURS = {"ok": "#1a7f37", "fail": "#cf222e", "warn": "#9a6700", "info": "#0969da", "muted": "#6e7781"}

CSS = """
:root{color-scheme:light;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#ffffff;--band:#f6f8fa;
--ok:#1a7f37;--ok-bg:#dafbe1;--fail:#cf222e;--fail-bg:#ffebe9;--warn:#9a6700;--warn-bg:#fff8c5;
--info:#0969da;--info-bg:#ddf4ff;--muted-bg:#eff2f5}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 -apple-system,"Segoe UI","Noto Sans",
Helvetica,Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px}
header.report{border-bottom:3px solid var(--fg);margin-bottom:20px;padding-bottom:8px}
header.report h1{font-size:26px;margin:0 0 4px}
header.report p{margin:0;color:var(--muted)}
h2{font-size:19px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:18px 0 8px}
table{border-collapse:collapse;width:100%;margin:6px 0 14px;font-size:14px}
th,td{border:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:var(--band);font-weight:600}
tbody tr:nth-child(even) td{background:#fbfcfd}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:230px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12.5px;font-weight:600;
white-space:nowrap;border:1px solid transparent}
.badge.ok{color:var(--ok);background:var(--ok-bg);border-color:#aceebb}
.badge.fail{color:var(--fail);background:var(--fail-bg);border-color:#ffcecb}
.badge.warn{color:var(--warn);background:var(--warn-bg);border-color:#eed888}
.badge.info{color:var(--info);background:var(--info-bg);border-color:#b6e3ff}
.badge.muted{color:var(--muted);background:var(--muted-bg);border-color:var(--line)}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0 16px}
.card{flex:1 1 160px;border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:var(--band)}
.card .label{color:var(--muted);font-size:13px}
.card .value{font-size:24px;font-weight:600;font-variant-numeric:tabular-nums}
.card.ok{border-left:5px solid var(--ok)} .card.fail{border-left:5px solid var(--fail)}
.card.warn{border-left:5px solid var(--warn)} .card.info{border-left:5px solid var(--info)}
.card.muted{border-left:5px solid var(--muted)}
.note{color:var(--muted);font-size:13.5px}
.verdict{font-size:18px;font-weight:600;padding:10px 14px;border-radius:8px;margin:10px 0}
.verdict.ok{background:var(--ok-bg);color:var(--ok)} .verdict.fail{background:var(--fail-bg);color:var(--fail)}
.verdict.warn{background:var(--warn-bg);color:var(--warn)} .verdict.info{background:var(--info-bg);color:var(--info)}
.verdict.muted{background:var(--muted-bg);color:var(--muted)}
.prose{white-space:pre-wrap;border-left:4px solid var(--info);padding:6px 12px;background:var(--band)}
pre{background:var(--band);border:1px solid var(--line);border-radius:6px;padding:10px;white-space:pre-wrap;
font-size:13px}
svg.chart{max-width:100%;height:auto;display:block;margin:6px 0 14px}
svg.chart text{font-family:inherit;font-size:12px;fill:var(--fg)}
td.cell-ok{background:var(--ok-bg)!important} td.cell-fail{background:var(--fail-bg)!important}
td.cell-warn{background:var(--warn-bg)!important} td.cell-muted{background:var(--muted-bg)!important;color:var(--muted)}
footer{margin-top:36px;color:var(--muted);font-size:12.5px;border-top:1px solid var(--line);padding-top:8px}
@media print{main{padding:0} h2{break-after:avoid} table{break-inside:auto} tr{break-inside:avoid}}
"""


class Markup(str):
    """HTML that is already safe: helpers pass it through unescaped; ``+`` escapes a plain string operand."""

    def __add__(self, other):
        return Markup(str.__add__(self, esc(other)))

    def __radd__(self, other):
        return Markup(str.__add__(esc(other), self))


def esc(value):
    """Escape any value for HTML text or attribute context (Markup passes through; None is empty)."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(_html.escape(str(value), quote=True))


def join(parts, separator=""):
    return Markup(esc(separator).join(esc(part) for part in parts))


def tag(name, content="", **attributes):
    """``<name attr="...">content</name>``; ``class_`` stands for ``class``; None attributes are left out."""
    attrs = "".join(' %s="%s"' % (key.rstrip("_").replace("_", "-"), esc(value))
                    for key, value in attributes.items() if value is not None)
    return Markup("<%s%s>%s</%s>" % (name, attrs, esc(content), name))


def code(value):
    return tag("code", value)


def badge(text, tone="muted"):
    return tag("span", text, class_="badge %s" % (tone if tone in TONES else "muted"))


def verdict(text, tone):
    return tag("div", text, class_="verdict %s" % (tone if tone in TONES else "muted"))


def para(text, note=False):
    return tag("p", text, class_="note" if note else None)


def section(title, *content, level=2, anchor=None):
    return Markup(tag("h%d" % level, title, id=anchor) + join(content))


def cards(items):
    """Summary figures: ``[(label, value, tone), ...]``."""
    return tag("div", join(tag("div", tag("div", label, class_="label") + tag("div", value, class_="value"),
                               class_="card %s" % tone) for label, value, tone in items), class_="cards")


def table(headers, rows, numeric=(), css_class=None, cell_classes=None):
    """A table. ``numeric``: column indexes aligned right; ``cell_classes(row, column) -> class or None``."""
    head = tag("thead", tag("tr", join(tag("th", header, class_="num" if index in numeric else None)
                                       for index, header in enumerate(headers))))
    body_rows = []
    for row_index, row in enumerate(rows):
        cells = []
        for index, value in enumerate(row):
            classes = []
            if index in numeric:
                classes.append("num")
            if cell_classes:
                extra = cell_classes(row_index, index)
                if extra:
                    classes.append(extra)
            cells.append(tag("td", value, class_=" ".join(classes) or None))
        body_rows.append(tag("tr", join(cells)))
    return tag("table", head + tag("tbody", join(body_rows)), class_=css_class)


def key_values(pairs):
    """A two-column table of ``(label, value)``; rows that are None or whose value is None are left out."""
    return tag("table", tag("tbody", join(tag("tr", tag("th", pair[0]) + tag("td", pair[1]))
                                          for pair in pairs if pair is not None and pair[1] is not None)),
               class_="kv")


def bullet_list(items):
    return tag("ul", join(tag("li", item) for item in items))


def bar_chart(items, unit="", width=760, bar_height=22, max_value=None, title=None):
    """Horizontal bars as inline SVG: ``[(label, value, tone), ...]``; value labels at the bar ends."""
    items = list(items)
    label_width = min(340, max([len(str(label)) for label, _, _ in items] + [4]) * 7 + 16)
    value_width = 90
    plot = max(width - label_width - value_width, 80)
    top = max(max_value or 0, max([value or 0 for _, value, _ in items] + [0])) or 1
    gap = 8
    height = len(items) * (bar_height + gap) + gap
    parts = []
    if title:
        parts.append(tag("title", title))
    for index, (label, value, tone) in enumerate(items):
        y = gap + index * (bar_height + gap)
        length = 0 if not value else max(2, round(plot * value / top))
        colour = _TONE_COLOURS.get(tone, _TONE_COLOURS["info"])
        parts.append(tag("text", label, x=label_width - 8, y=y + bar_height * 0.7, **{"text-anchor": "end"}))
        parts.append(tag("rect", "", x=label_width, y=y, width=plot, height=bar_height, fill="#eff2f5", rx=3))
        parts.append(tag("rect", "", x=label_width, y=y, width=length, height=bar_height, fill=colour, rx=3))
        shown = _number(value) + (" %s" % unit if unit else "")
        parts.append(tag("text", shown, x=label_width + length + 6, y=y + bar_height * 0.7))
    return tag("svg", join(parts), class_="chart", xmlns="http://www.w3.org/2000/svg", role="img",
               viewBox="0 0 %d %d" % (width, height), width=width, height=height,
               **{"aria-label": title or "bar chart"})


def stacked_bar(segments, width=760, height=30, title=None):
    """One bar split into parts, e.g. hosts per state: ``[(label, count, tone), ...]``, with a legend."""
    segments = [(label, count, tone) for label, count, tone in segments if count]
    total = sum(count for _, count, _ in segments) or 1
    parts = [tag("title", title)] if title else []
    x = 0.0
    for label, count, tone in segments:
        length = width * count / total
        parts.append(tag("rect", tag("title", "%s: %s" % (label, count)), x=round(x, 2), y=0,
                         width=round(length, 2), height=height, fill=_TONE_COLOURS.get(tone, "#0969da")))
        x += length
    legend_y = height + 18
    legend_x = 0
    for label, count, tone in segments:
        parts.append(tag("rect", "", x=legend_x, y=legend_y - 10, width=10, height=10,
                         fill=_TONE_COLOURS.get(tone, "#0969da")))
        text = "%s (%s)" % (label, count)
        parts.append(tag("text", text, x=legend_x + 14, y=legend_y))
        legend_x += 14 + len(text) * 7 + 18
    full_width = max(width, legend_x)
    return tag("svg", join(parts), class_="chart", xmlns="http://www.w3.org/2000/svg", role="img",
               viewBox="0 0 %d %d" % (full_width, legend_y + 6), width=full_width, height=legend_y + 6,
               **{"aria-label": title or "stacked bar"})


def page(title, body, subtitle=None, generated=None, footer=None):
    """A complete, self-contained HTML document."""
    foot = footer or "Generated by esd%s from the change-order ledger." % (" at %s" % generated if generated else "")
    return Markup(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n<main>\n%s\n%s\n%s\n</main>\n</body>\n</html>\n"
        % (esc(title), CSS, tag("header", tag("h1", title) + (tag("p", subtitle) if subtitle else ""),
                                class_="report"),
           body, tag("footer", foot)))


def _number(value):
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return "%.1f" % value
    return str(int(value)) if isinstance(value, float) else str(value)
