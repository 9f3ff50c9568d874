"""What the README promises is tested: every row of its "What is checked" table names a
message that a test asserts, and its layout table lists every module."""

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


def test_the_layout_table_lists_every_module_with_its_length():
    text = (ROOT / "README.md").read_text()
    listed = dict(re.findall(r"^\| `((?:gpt/\w+|main)\.py)` \| (\d+) \|", text, flags=re.MULTILINE))
    modules = {f"gpt/{p.name}" for p in (ROOT / "gpt").glob("*.py") if p.name != "__init__.py"} | {"main.py"}
    assert set(listed) == modules
    for name, lines in listed.items():  # kept roughly current: within a fifth
        actual = len((ROOT / name).read_text().splitlines())
        assert abs(actual - int(lines)) <= actual / 5, f"{name}: README says {lines} lines, it has {actual}"
