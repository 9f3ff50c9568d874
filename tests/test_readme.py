"""What the README promises is tested: every row of its "What is checked" table names a
message that a test asserts."""

import re

from helpers import ROOT


def checked_messages() -> list[str]:
    """The messages (code spans) of the README's "What is checked" table, one list a row."""
    text = (ROOT / "README.md").read_text()
    table = text.split("### What is checked", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| case", "| ---"))]
    return [re.findall(r"`([^`]+)`", row.rsplit(" | ", 1)[1].replace("\\|", "|")) for row in rows]


def test_every_row_of_what_is_checked_is_asserted_by_a_test():
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_readme.py")
    rows = checked_messages()
    assert len(rows) >= 40 and all(rows)
    missing = [m for row in rows for m in row if m not in tests and re.escape(m) not in tests]
    assert missing == []
