"""What README.md and docs/ promise is checked: every command in them parses as written (the
quick ones run), every link leads somewhere, every row of the errors table is asserted by a
test, and the README fits on a few screens."""

import contextlib
import io
import re
import runpy
import shlex
import sys
import warnings

import pytest

from helpers import ROOT, cli_parser

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Commands that need what a test cannot give (a GPU cluster, a download, a browser, another
# program: llama.cpp's, Ollama): not run.
ELSEWHERE = ("pip", "tensorboard", "hf", "torchrun", "sbatch", "srun", "ruff", "git", "cd", "export", "curl", "mkdir")
ELSEWHERE += ("llama-completion", "llama-cli", "llama-server", "ollama")


def commands() -> list[tuple[str, str]]:
    """(page, command) of every line of every bash block, continuation lines joined."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    found.append((page.name, line))
    return found


def words(command: str) -> list[str]:
    """The command's words, environment settings (NAME=value) and `&& ...` left out."""
    args = shlex.split(command.split(" && ")[-1])
    while args and re.fullmatch(r"[A-Z_]+=\S*", args[0]):
        args = args[1:]
    return args


def inline_commands() -> list[tuple[str, str]]:
    """(page, command) of every `python ...` in running text and tables, but main.py's (which
    name placeholders there: CKPT, X)."""
    spans = [(page.name, c) for page in PAGES for c in re.findall(r"`(python [^`]+)`", page.read_text())]
    return [(page, c) for page, c in spans if "main.py" not in c]


COMMANDS = commands()


def test_the_readme_fits_on_a_few_screens_and_links_the_manual():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert {p.name for p in (ROOT / "docs").glob("*.md")} <= set(re.findall(r"\(docs/(\w+\.md)\)", readme))


def test_every_link_leads_to_a_file_and_heading_that_exist():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#([\w-]+))?\)", page.read_text()):
            path = (page.parent / target[0]).resolve()
            assert path.is_file(), f"{page.name} links to {target[0]}"
            if target[1]:
                headings = re.findall(r"^#+ (.*)$", path.read_text(), flags=re.M)
                anchors = {re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-") for h in headings}
                assert target[1] in anchors, f"{page.name} links to {target[0]}#{target[1]}"


def test_every_file_and_class_path_named_exists():
    import importlib

    for page in [*PAGES, *(ROOT / "configs").rglob("*.yaml")]:
        text = page.read_text()
        for path in re.findall(r"\b((?:gpt|tests|benchmarks|scripts|configs)/[\w/]+\.(?:py|yaml))\b", text):
            assert (ROOT / path).is_file(), f"{page.name} names {path}"
        for dotted in set(re.findall(r"(?<![\w/])(gpt(?:\.\w+)+)\b", text)) - {"gpt.yaml"}:
            parts = dotted.split(".")
            for split in range(len(parts), 0, -1):  # the longest module, then attributes on it
                try:
                    obj = importlib.import_module(".".join(parts[:split]))
                    break
                except ModuleNotFoundError:
                    continue
            for attribute in parts[split:]:
                assert hasattr(obj, attribute), f"{page.name} names {dotted}"
                obj = getattr(obj, attribute)


def test_no_page_counts_lines_or_tells_history():
    for page in PAGES:
        text = page.read_text()
        assert "| lines |" not in text
        for phrase in ("before this change", "Before this,", "no longer", "used to"):
            assert phrase not in text, f"{page.name}: {phrase!r}"


@pytest.fixture(scope="module")
def parser():
    return cli_parser()


def test_every_main_py_command_parses_as_written(parser, monkeypatch):
    monkeypatch.chdir(ROOT)
    main_commands = [(page, words(c)) for page, c in COMMANDS if "main.py" in words(c)[:3]]
    assert len(main_commands) >= 20
    for page, args in main_commands:
        args = args[args.index("main.py") + 1 :]
        try:
            parser.parse_args(args)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - any failure names the command
            pytest.fail(f"{page}: python main.py {shlex.join(args)}: {e}")


def run_in_process(argv: list[str], module: str | None = None, path: str | None = None) -> tuple[int, str]:
    """Run a module or script as `python ...` would, in this process; (exit code, output)."""
    out, code = io.StringIO(), 0
    saved, saved_path = sys.argv, list(sys.path)
    sys.argv = [module or path, *argv]
    if path is not None:
        sys.path.insert(0, str((ROOT / path).parent))  # as python puts a script's folder first
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module was imported before
            if module:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv, sys.path[:] = saved, saved_path
    return code, out.getvalue()


def test_every_other_command_names_a_program_and_options_that_exist(monkeypatch):
    """python -m MODULE, scripts/ and benchmarks/: --help answers and names every option used."""
    monkeypatch.chdir(ROOT)
    checked = 0
    for page, command in sorted(set(COMMANDS + inline_commands())):
        args = words(command)
        if not args or args[0] in ELSEWHERE or "main.py" in args[:3]:
            continue
        assert args[0] == "python", f"{page}: {command}"
        module, path = (args[2], None) if args[1] == "-m" else (None, args[1])
        rest = args[3:] if module else args[2:]
        if path is not None:
            assert (ROOT / path).is_file(), f"{page}: {command}"
        code, help_text = run_in_process(["--help"], module, path)
        assert code == 0, f"{page}: {command}: --help exits {code}\n{help_text[-2000:]}"
        for option in {a.split("=")[0] for a in rest if a.startswith("--")}:
            assert option in help_text, f"{page}: {command}: {option} is not an option"
        checked += 1
    assert checked >= 10


def test_the_quick_commands_run_as_written(monkeypatch, capsys):
    from gpt.eval import report

    monkeypatch.chdir(ROOT)
    quick = [words(c) for _, c in COMMANDS + inline_commands() if "gpt.eval.report" in c]
    assert quick
    for args in quick:
        report.main(args[3:])
    assert "124,439,808" in capsys.readouterr().out  # GPT-2 small, as the docs say


def error_messages() -> list[list[str]]:
    """The messages (code spans) of docs/errors.md's table, one list a row."""
    text = (ROOT / "docs" / "errors.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith(("| case", "| ---"))]
    return [re.findall(r"`([^`]+)`", row.rsplit(" | ", 1)[1].replace("\\|", "|")) for row in rows]


def test_every_row_of_the_errors_table_is_asserted_by_a_test():
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_docs.py")
    rows = error_messages()
    assert len(rows) >= 40 and all(rows)
    missing = [m for row in rows for m in row if m not in tests and re.escape(m) not in tests]
    assert missing == []
