"""The docs' figures are rendered from committed result files (tools/docs.sh)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS_SH = REPO / "tools" / "docs.sh"
sys.path.insert(0, str(REPO / "tools"))
import docs  # noqa: E402


def check(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(DOCS_SH), "--check", *map(str, files)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_committed_docs_match_their_render():
    result = check()
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rendered_table_is_registered_and_every_doc_has_figures_from_files():
    marked = set()
    for path in docs.doc_files():
        marked |= {m["name"] for m in docs.TABLE.finditer(path.read_text())}
    assert marked <= set(docs.TABLES)
    # each registered table appears in some doc (no dead renderers)
    assert set(docs.TABLES) <= marked, sorted(set(docs.TABLES) - marked)


def _first_table_number(text: str) -> re.Match:
    block = next(docs.TABLE.finditer(text))
    number = re.search(r"\d+\.\d+", block["body"])
    assert number, "the rendered table holds no decimal number"
    return block.start("body") + number.start(), number.group()


def test_a_hand_edited_table_figure_fails_the_check(tmp_path: Path):
    text = (REPO / "docs" / "benchmarks.md").read_text()
    pos, number = _first_table_number(text)
    edited = number[:-1] + ("1" if number[-1] != "1" else "2")
    doc = tmp_path / "benchmarks.md"
    doc.write_text(text[:pos] + edited + text[pos + len(number):])
    result = check(doc)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("-|") and edited in line for line in lines), result.stdout
    assert any(line.startswith("+|") and number in line for line in lines), result.stdout
    assert "never edit a rendered figure by hand" in result.stderr


def test_a_hand_edited_value_in_prose_fails_the_check(tmp_path: Path):
    text = (REPO / "docs" / "cluster.md").read_text()
    match = next(docs.VALUE.finditer(text))
    doc = tmp_path / "cluster.md"
    doc.write_text(text[:match.start("body")] + "0.01" + text[match.end("body"):])
    assert check(doc).returncode == 1
    doc.write_text(text)
    assert check(doc).returncode == 0


def test_render_fills_a_marked_block_from_its_file(tmp_path: Path):
    doc = tmp_path / "page.md"
    doc.write_text("Intro.\n\n<!-- table:bench.todm_demo -->\nstale\n<!-- /table -->\n\n"
                   "Ratio <!-- value:bench/results/todm_demo.json todm_job_vs_separate %.3f -->"
                   "x<!-- /value -->.\n")
    subprocess.run([str(DOCS_SH), str(doc)], check=True, capture_output=True, timeout=120)
    out = doc.read_text()
    data = docs.load("bench/results/todm_demo.json")
    assert "stale" not in out and f"{data['todm_job_ms']:.0f} ms" in out
    assert f"Ratio <!-- value:bench/results/todm_demo.json todm_job_vs_separate %.3f -->" \
           f"{data['todm_job_vs_separate']:.3f}<!-- /value -->." in out
    assert "Source: `bench/results/todm_demo.json`." in out


@pytest.mark.parametrize("marker", ["<!-- table:no_such_table -->\nx\n<!-- /table -->",
                                    "<!-- value:bench/results/missing.json a %.1f -->1<!-- /value -->"])
def test_unknown_table_or_missing_file_is_an_error(tmp_path: Path, marker: str):
    doc = tmp_path / "page.md"
    doc.write_text(marker + "\n")
    result = check(doc)
    assert result.returncode == 2
    assert "unknown table 'no_such_table'" in result.stderr or "missing.json is missing" in result.stderr


def test_readme_is_short_and_every_docs_page_says_what_it_is_for():
    assert len((REPO / "README.md").read_text().splitlines()) < 150
    pages = sorted((REPO / "docs").glob("*.md"))
    assert {p.stem for p in pages} >= {"methods", "recipe", "deploy", "cluster", "results",
                                      "benchmarks"}
    for page in pages:
        assert "What this page is for:" in page.read_text().split("\n\n")[1], page
