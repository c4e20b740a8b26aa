"""Markdown for the benchmark results: what run.py prints and what BENCHMARKS.md holds, the same text."""

from __future__ import annotations

from collections.abc import Sequence

from measure import Check, Figure, Section, format_value


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def figure_row(section: Section, figure: Figure) -> list[str]:
    extra = list(section.extra_cells.get(figure.name, ("",) * len(section.extra_columns)))
    spread = [format_value(value) for value in (figure.low, figure.median, figure.high)]
    return [figure.name, figure.unit, *spread, *extra, figure.limit]


def check_row(check: Check) -> list[str]:
    return [check.label, format_value(check.value), check.goal or "-", check.verdict or "-"]


def section_markdown(section: Section) -> list[str]:
    lines = [f"## {section.title}", ""]
    header = ["figure", "unit", "min", "median", "max", *section.extra_columns, "what limits it"]
    rows = [figure_row(section, figure) for figure in section.figures]
    blank = [""] * (len(section.extra_columns) + 1)
    rows += [[name, "", "-", "-", "-", *blank[:-1], reason] for name, reason in section.unmeasured]
    lines += table(header, rows) + [""]
    if section.checks:
        lines += table(["check (medians)", "value", "goal", "verdict"], [check_row(c) for c in section.checks])
        lines.append("")
    lines += [f"- {note}" for note in section.notes]
    return lines + [""] if section.notes else lines


def results_markdown(
    sections: Sequence[Section], machine: Sequence[tuple[str, str]], command: str, repeats: int
) -> str:
    lines = ["## Machine", ""]
    lines += table(["", ""], [list(row) for row in machine]) + [""]
    lines += [
        f"Command: `{command}`; every figure is min / median / max over {repeats} timed repeats after a warm-up.",
        "",
    ]
    for section in sections:
        lines += section_markdown(section)
    return "\n".join(lines).rstrip() + "\n"
