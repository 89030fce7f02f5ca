"""One section of bench/RESULTS.md per benchmark, replaced where it stands by the script that owns it."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
# Hand-written notes below this line in a section survive the next run of its benchmark.
NOTES_MARK = "<!-- figures above are written by the benchmark; notes below are kept -->"


def write_section(text: str, results: Path = RESULTS) -> None:
    """Replace the section that `text` starts (its "## Title" line) in place, or append it if new.

    Other sections stay as they are and where they are; the file is read right before it is
    written, so benchmarks run one after another do not undo each other.
    """
    title = text.lstrip("\n").split("\n", 1)[0]
    assert title.startswith("## "), "a section starts with its '## ' title"
    current = results.read_text() if results.exists() else "# Benchmark results\n"
    section = text.strip("\n") + "\n\n" + NOTES_MARK + "\n"
    start = current.find(f"\n{title}\n")
    if start < 0:
        results.write_text(current.rstrip("\n") + "\n\n" + section)
        return
    start += 1
    end = current.find("\n## ", start)
    end = len(current) if end < 0 else end + 1
    old = current[start:end]
    notes = old[old.index(NOTES_MARK) + len(NOTES_MARK):].strip("\n") if NOTES_MARK in old else ""
    if notes:
        section += "\n" + notes + "\n"
    rest = current[end:]
    results.write_text(current[:start] + section + ("\n" + rest if rest else ""))
