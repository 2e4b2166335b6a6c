"""Markdown for every esd report, written to render in git forges (GitHub, GitLab, Gitea): GFM tables,
code spans, no raw HTML. Values are escaped so a host name or a failure message cannot break a table."""

from __future__ import annotations

import re

_TABLE_SPECIAL = re.compile(r"([|\\`*_\[\]<>])")


def text(value):
    """A value as inline Markdown text: special characters escaped, newlines folded."""
    if value is None:
        return "-"
    value = " ".join(str(value).split())
    return _TABLE_SPECIAL.sub(r"\\\1", value) if value else "-"


def paragraphs(value):
    """Free text as Markdown paragraphs: each paragraph escaped like text(), blank lines between them kept."""
    parts = [text(part) for part in str(value or "").replace("\r\n", "\n").split("\n\n") if part.strip()]
    return "\n\n".join(parts) if parts else "-"


def code(value):
    """A value as a code span (digests, paths, commands); backticks inside are handled."""
    if value is None or value == "":
        return "-"
    value = " ".join(str(value).split()).replace("|", "\\|")
    fence = "``" if "`" in value else "`"
    return "%s%s%s" % (fence, " %s " % value if fence == "``" else value, fence)


def table(headers, rows, numeric=()):
    """A GFM table; cells are taken as already formatted Markdown (use text()/code() on raw values)."""
    lines = ["| %s |" % " | ".join(headers),
             "|%s|" % "|".join("---:" if index in numeric else "---" for index in range(len(headers)))]
    for row in rows:
        lines.append("| %s |" % " | ".join(cell if cell not in (None, "") else "-" for cell in map(_cell, row)))
    return "\n".join(lines)


def key_values(pairs):
    """A two-column table of (label, Markdown value); rows that are None or whose value is None are left out."""
    return table(["", ""], [pair for pair in pairs if pair is not None and pair[1] is not None])


def heading(title, level=2):
    return "%s %s" % ("#" * level, title)


def bullets(items):
    return "\n".join("- %s" % item for item in items)


def bar(value, maximum, width=20):
    """A text bar for a figure (renders everywhere, including terminals): ``█████░░░░░``."""
    if not maximum or value is None:
        return ""
    filled = int(round(width * max(0, min(value, maximum)) / maximum))
    return "█" * filled + "░" * (width - filled)


def document(*blocks):
    """Blocks separated by blank lines, ending with one newline."""
    return "\n\n".join(block.rstrip("\n") for block in blocks if block) + "\n"


def _cell(value):
    if value is None:
        return "-"
    return str(value).replace("\n", " ")
