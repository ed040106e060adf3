"""The evaluation report: a markdown table of methods (rows) by metrics (columns)."""

from __future__ import annotations

import math

NOT_COMPUTED = "not computed"


def format_value(value: float | int | str | None) -> str:
    """Four significant digits for numbers; "n/a" for missing, NaN or not-computed values."""
    if value is None or (isinstance(value, str) and value.startswith(NOT_COMPUTED)):
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or isinstance(value, int):
        return str(int(value))
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def metrics_table(results: dict[str, dict[str, float | int | str]]) -> str:
    """Markdown table: one row per method, one column per metric (first-seen order).

    Metrics a method lacks, NaN values and values starting with "not computed" show "n/a";
    the reasons for "not computed" are listed under the table, once per metric and reason.
    """
    metrics: list[str] = []
    for row in results.values():
        metrics.extend(m for m in row if m not in metrics)
    lines = [
        "| method | " + " | ".join(_cell(m) for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    notes: list[str] = []
    for method, row in results.items():
        cells = [_cell(format_value(row.get(m))) for m in metrics]
        lines.append(f"| {_cell(method)} | " + " | ".join(cells) + " |")
        for m in metrics:
            value = row.get(m)
            if isinstance(value, str) and value.startswith(NOT_COMPUTED):
                note = f"- {m}: {value}"
                if note not in notes:
                    notes.append(note)
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
