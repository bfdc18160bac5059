"""Documentation that cannot go stale.

- every ``python`` and ``bash`` code block of README.md and docs/*.md runs (in a temporary
  folder, the blocks of one page in order, Python blocks sharing one namespace per page);
- the CLI reference (docs/cli.md) is regenerated from the argument parser and compared;
- every figure of the README's headline table is found in the latest bench/results/*.json or
  carries its date and machine;
- the site builds with ``mkdocs build --strict`` and references no script, style sheet or font
  on the network.

Markers, written in the Markdown source just above a block (invisible on the rendered page):

    <!-- doc-test: replace "OLD" "NEW" -->    run the block with OLD replaced (short settings)
    <!-- doc-test: requires MODULE -->        skip the block when MODULE cannot be imported

and, as the first line inside a block (visible, with its reason):

    # doc-test: skip (REASON)                 never run: servers, installs, long runs
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!-- doc-test: (.*?) -->")


def code_blocks(page: Path) -> list[dict]:
    """The page's python/bash blocks: language, code, the markers above it, line number."""
    text = page.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        lang, code = match.group(1), match.group(2)
        if lang not in ("python", "bash"):
            continue
        before = text[:match.start()].rstrip("\n").split("\n")
        markers = []
        while before and MARKER.fullmatch(before[-1].strip()):
            markers.append(MARKER.fullmatch(before[-1].strip()).group(1))
            before.pop()
        line = text[:match.start()].count("\n") + 1
        blocks.append({"lang": lang, "code": code, "markers": markers, "line": line})
    return blocks


def _prepare(block: dict) -> tuple[str | None, str]:
    """(code to run or None, why not)."""
    code = block["code"]
    first = code.lstrip().split("\n", 1)[0]
    if first.startswith("# doc-test: skip"):
        assert "(" in first and first.rstrip().endswith(")"), \
            f"a skipped block must say why: {first!r}"
        return None, first
    for marker in block["markers"]:
        if marker.startswith("requires "):
            module = marker.split()[1]
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                return None, f"needs {module}"
        elif marker.startswith("replace "):
            old, new = re.fullmatch(r'replace "(.*)" "(.*)"', marker).groups()
            assert old in code, f"replace marker: {old!r} is not in the block"
            code = code.replace(old, new)
        else:
            raise AssertionError(f"unknown doc-test marker {marker!r}")
    return code, ""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding the repository's configs/ and docs/ (the paths the blocks use)."""
    work = tmp_path_factory.mktemp("docs-run")
    for name in ("configs", "docs", "notebooks"):
        (work / name).symlink_to(ROOT / name)
    return work


def _env(work: Path) -> dict[str, str]:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env["HOME"] = str(work)        # nothing written to the user's home
    return env


#: what the bash blocks see: the commands as a user has them after pip install
PRELUDE = f"""set -euo pipefail
nnscratch() {{ "{sys.executable}" -m nnscratch "$@"; }}
python3() {{ "{sys.executable}" "$@"; }}
python() {{ "{sys.executable}" "$@"; }}
"""

RAN: list[str] = []


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_code_blocks_run(page, workdir):
    blocks = code_blocks(page)
    folder = workdir / page.stem
    folder.mkdir(exist_ok=True)
    for name in ("configs", "docs", "notebooks"):
        if not (folder / name).exists():
            (folder / name).symlink_to(ROOT / name)
    namespace: dict = {"__name__": "__docs__"}
    env = _env(workdir)
    old_cwd = os.getcwd()
    os.chdir(folder)
    try:
        for block in blocks:
            code, why = _prepare(block)
            where = f"{page.name}:{block['line']}"
            if code is None:
                continue
            start = time.perf_counter()
            if block["lang"] == "python":
                try:
                    exec(compile(code, where, "exec"), namespace)
                except Exception as exc:
                    raise AssertionError(f"{where}: the python block fails: "
                                         f"{type(exc).__name__}: {exc}\n{code}") from exc
            else:
                proc = subprocess.run(["bash", "-c", PRELUDE + code], cwd=folder, env=env,
                                      capture_output=True, text=True, timeout=300)
                assert proc.returncode == 0, \
                    f"{where}: the bash block fails:\n{code}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            RAN.append(f"{where} {time.perf_counter() - start:.1f}s")
    finally:
        os.chdir(old_cwd)
    print(f"\n{page.name}: {len([r for r in RAN if r.startswith(page.name + ':')])} of "
          f"{len(blocks)} blocks run: {', '.join(r for r in RAN if r.startswith(page.name + ':'))}")


def test_most_blocks_run():
    """Skipping is the exception: every skipped block says why, and most blocks run."""
    blocks = [b for page in PAGES for b in code_blocks(page)]
    skipped = [b for b in blocks if b["code"].lstrip().startswith("# doc-test: skip")]
    assert len(blocks) >= 30 and len(skipped) <= len(blocks) // 3, (len(blocks), len(skipped))


def test_markers_are_honest():
    """A negative control: a block that fails is reported as failing."""
    bad = {"lang": "python", "code": "raise RuntimeError('stale docs')\n", "markers": [],
           "line": 1}
    code, _ = _prepare(bad)
    with pytest.raises(RuntimeError):
        exec(code, {})
    with pytest.raises(AssertionError, match="is not in the block"):
        _prepare({**bad, "markers": ['replace "epochs=9" "epochs=1"']})


# -- the CLI reference --------------------------------------------------------------------

def test_cli_reference_is_generated_from_the_parser(tmp_path):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_cli
    finally:
        sys.path.remove(str(ROOT / "docs"))
    fresh = gen_cli.render()
    page = (ROOT / "docs" / "cli.md").read_text()
    from nnscratch.cli import COMMANDS

    for name in COMMANDS:
        assert f"## nnscratch {name}" in fresh
    if sys.version_info[:2] == (3, 11):   # argparse's layout differs between versions
        assert page == fresh, "docs/cli.md is out of date: run python docs/gen_cli.py"
    else:
        for flag in re.findall(r"--[a-z][a-z-]+", fresh):
            assert flag in page, f"docs/cli.md lacks {flag}: run python docs/gen_cli.py"


# -- the README's figures -----------------------------------------------------------------

DATED = re.compile(r"\b(20\d\d-\d\d-\d\d)\b.*\b(machine|H100|H200|EPYC|core)", re.I)


def _bench_values() -> set[str]:
    results = sorted((ROOT / "bench" / "results").glob("*.json"),
                     key=lambda p: p.stat().st_mtime)
    values: set[str] = set()

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            for digits in (1, 2, 3, 4):
                values.add(f"{x:.{digits}f}")
    for path in results:
        walk(json.loads(path.read_text()))
    return values


def readme_figures() -> list[tuple[str, str]]:
    """(row, figure) for every number in the value column of the README's figures table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Headline figures", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("|") and not r.startswith("|---")]
    header, body = rows[0], rows[1:]
    assert "value" in header and "measured" in header
    out = []
    for row in body:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for figure in re.findall(r"\d+(?:\.\d+)?", cells[1]):
            out.append((row, figure))
    return out


def test_readme_figures_are_measured():
    figures = readme_figures()
    assert len(figures) >= 5
    known = _bench_values()
    for row, figure in figures:
        assert figure in known or DATED.search(row), \
            f"README figure {figure} is neither in bench/results/*.json nor marked " \
            f"'measured on DATE, MACHINE': {row}"


def test_readme_is_short_and_keeps_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 10_500, len(text.encode())
    assert 'python3 -m pip install . && python3 -m nnscratch train' in text
    assert 'python3 -m pip install ".[dev]" && python3 -m pytest' in text
    for diary in ("this session", "the session before", "review commit"):
        assert diary not in text, f"a measurement diary phrase in the README: {diary!r}"
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:md|png|ipynb))(?:#[\w-]+)?\)", text):
        assert (ROOT / link).exists(), f"README links to a missing file: {link}"


# -- the site -----------------------------------------------------------------------------

def test_site_builds_strict_and_offline(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("latex2mathml")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 18
    for page in pages:
        html = page.read_text()
        for tag in re.findall(r"<(?:script|link|img)\b[^>]*>", html):
            assert not re.search(r"(src|href)=\"(https?:)?//", tag) or "rel=\"canonical\"" in tag, \
                f"{page.relative_to(site)} loads from the network: {tag}"
    for css in site.rglob("*.css"):
        assert not re.search(r"url\(['\"]?(https?:)?//", css.read_text()), css
    # formulas are MathML, rendered at build time
    assert "<math" in (site / "learning-path" / "index.html").read_text()
