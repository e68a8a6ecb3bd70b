"""scripts/build_report.py: placeholders resolve from results files or fail with one clear line; the PDF builds."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_report.py"
spec = importlib.util.spec_from_file_location("build_report", SCRIPT)
build_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_report)

TABLE = """| task | model | accuracy |
|---|---|---|
| memory | LSTM | 0.981 ± 0.012 |"""
WIDE_TABLE = "\n".join([
    "| configuration | attention | pos. emb. | one-step L1 | one-step PSNR [dB] | SSIM | rollout PSNR @10 | wall time [min] |",
    "|---|---|---|---|---|---|---|---|",
    *[f"| config/vit_{name}.json (a long description) | yes | no | 0.0123 ± 0.0004 | 31.2 ± 0.4 | 0.941 ± 0.003"
      f" | 24.8 ± 1.1 | 42.5 |" for name in ("cpu", "noattention", "nopos")],
])
AUTHORS = """- name: Student One
  matriculation: "0000001"
  email: one@example.org
"""


@pytest.fixture
def root(tmp_path):
    """A results folder with a JSON summary, two Markdown tables, a PNG and an authors file."""
    (tmp_path / "results").mkdir()
    summary = {"full": {"one_step": {"psnr": {"mean": 31.23456}}}, "runs": [{"loss": 0.5}, {"loss": 0.01234}],
               "best": "vit_best", "per_seed": [24.851, 22.695, 23.9]}
    (tmp_path / "results" / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "results" / "summary.md").write_text(TABLE + "\n")
    (tmp_path / "results" / "wide.md").write_text(WIDE_TABLE)
    Image.new("RGB", (300, 150), (30, 120, 200)).save(tmp_path / "results" / "curve.png")
    (tmp_path / "authors.yaml").write_text(AUTHORS)
    return tmp_path


def fill(root, text):
    return build_report.fill_placeholders(text, root, root / "authors.yaml")[0]


@pytest.mark.parametrize("placeholder, expected", [
    ("{{ value: results/summary.json | full.one_step.psnr.mean | .2f }}", "31.23"),
    ("{{value:results/summary.json|full.one_step.psnr.mean}}", "31.23456"),
    ("{{ value: results/summary.json | runs.1.loss | .1e }}", "1.2e-02"),
    ("{{ value: results/summary.json | runs.-1.loss | .1% }}", "1.2%"),
    ("{{ value: results/summary.json | best }}", "vit_best"),
    ("{{ value: results/summary.json | per_seed | .2f }}", "24.85, 22.70 and 23.90"),
    ("{{ value: results/summary.json | per_seed.0 | .1f }}", "24.9"),
])
def test_value_formats_a_number_found_by_dotted_path(root, placeholder, expected):
    assert fill(root, f"PSNR {placeholder} dB") == f"PSNR {expected} dB"


def test_table_figure_and_authors_expand_to_markdown(root):
    assert fill(root, "{{ table: results/summary.md }}") == TABLE
    figure = build_report.FIGURE.match(fill(root, "{{ figure: results/curve.png | A curve. | width=0.5 }}"))
    assert figure.group("caption", "width") == ("**Figure 1:** A curve.", "0.5")
    assert Path(figure["path"]) == (root / "results" / "curve.png").resolve()
    assert build_report.FIGURE.match(fill(root, "{{ figure: results/curve.png | A curve. }}"))["width"] == "1"
    assert fill(root, "{{ authors }}").splitlines() == [
        "| Name | Matriculation number | E-mail |", "|---|---|---|", "| Student One | 0000001 | one@example.org |"]


def test_tables_and_figures_are_numbered_in_order_and_referenced_by_label(root):
    text = "\n".join([
        "{{ ref: curve }} and {{ ref: hand }} and {{ ref: summary }}",
        "{{ table: results/summary.md }}",  # no caption: not numbered
        "{{ table: results/summary.md | Accuracy by model. | label=summary }}",
        "{{ figure: results/curve.png | First. }}",
        "{{ figure: results/curve.png | Second. | label=curve | width=0.5 }}",
        "{{ caption: A table written here. | label=hand }}",
        "| a | b |", "|---|---|", "| 1 | 2 |"])
    lines = fill(root, text).splitlines()
    assert lines[0] == "Figure 2 and Table 2 and Table 1"
    assert lines[1:5] == TABLE.splitlines() + ["Table: **Table 1:** Accuracy by model."]
    assert lines[5:8] == TABLE.splitlines()
    assert build_report.FIGURE.match(lines[8])["caption"] == "**Figure 1:** First."
    assert build_report.FIGURE.match(lines[9]).group("caption", "width") == ("**Figure 2:** Second.", "0.5")
    assert lines[10] == "Table: **Table 2:** A table written here."
    blocks = build_report.split_blocks("\n".join(lines[4:]))
    assert [kind for kind, _ in blocks] == ["caption", "table", "figure", "figure", "caption", "table"]


@pytest.mark.parametrize("text, message", [
    ("{{ ref: nowhere }}", "no table or figure has label=nowhere"),
    ("{{ figure: results/curve.png | A. | label=x }}\n{{ figure: results/curve.png | B. | label=x }}",
     "label=x is also Figure 1"),
    ("{{ figure: results/curve.png | A. | size=3 }}", "'size=3' is not one of width=..., label=..."),
])
def test_bad_labels_and_options_fail_with_one_line(root, text, message):
    with pytest.raises(build_report.ReportError, match=re.escape(message)):
        fill(root, text)


def test_table_is_taken_from_a_summary_with_prose_around_it(root):
    (root / "results" / "notes.md").write_text("# Summary\n\nrun with seeds 0-4\n\n" + TABLE + "\n\nFigures: see below.\n")
    assert fill(root, "{{ table: results/notes.md }}") == TABLE


def test_placeholders_inside_comments_are_not_resolved(root):
    text = "a\n<!-- planned:\n{{ table: results/not_yet.md }} -->\nb {{ value: results/summary.json | best }}"
    assert fill(root, text) == "a\n\n\nb vit_best"


@pytest.mark.parametrize("placeholder, message", [
    ("{{ value: results/missing.json | a.b }}", "no file results/missing.json"),
    ("{{ value: results/summary.json | full.two_step.psnr }}", "no key 'two_step' in results/summary.json"),
    ("{{ value: results/summary.json | runs.2.loss }}", "no key '2' in results/summary.json"),
    ("{{ value: results/summary.json | runs }}", "'runs' is a list, not a value"),
    ("{{ value: results/summary.json | best | .2f }}", "Unknown format code 'f'"),
    ("{{ table: results/missing.md }}", "no file results/missing.md"),
    ("{{ table: results/summary.json }}", "summary.json holds no Markdown table"),
    ("{{ figure: results/missing.png | caption }}", "no file results/missing.png"),
    ("{{ figure: results/curve.png | caption | width=1.5 }}", "'width=1.5' is not width=W with 0 < W <= 1"),
    ("{{ plot: results/curve.png }}", "unknown placeholder"),
])
def test_unresolvable_placeholder_fails_with_one_line_naming_it(root, placeholder, message):
    with pytest.raises(build_report.ReportError) as error:
        fill(root, f"intro\n\n{placeholder}\n")
    assert str(error.value).startswith(f"report.md:3: {placeholder}: ")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_build_warns_while_the_authors_are_the_templates_placeholder(root, capsys):
    (root / "report.md").write_text("# Title\n\n{{ authors }}\n\nText.\n")
    argv = ["--root", str(root), "--source", "report.md", "--authors", "authors.yaml", "--check"]
    assert build_report.main(argv) == 0 and capsys.readouterr().err == ""  # a filled-in author: no warning
    (root / "authors.yaml").write_text('- name: "[name: fill in docs/authors.yaml]"\n'
                                       '  matriculation: "[matriculation number]"\n  email: "[e-mail]"\n')
    assert build_report.main(argv) == 0  # the build still succeeds, with one line on stderr
    assert capsys.readouterr().err.splitlines() == [
        "warning: authors.yaml names no author yet: replace its [placeholder] with each student's name, "
        "matriculation number and e-mail"]
    assert "| [name: fill in docs/authors.yaml] | [matriculation number] | [e-mail] |" in fill(root, "{{ authors }}")


def test_block_placeholder_inside_a_paragraph_and_incomplete_authors_are_refused(root):
    with pytest.raises(build_report.ReportError, match="must stand alone on its line"):
        fill(root, "see {{ table: results/summary.md }}")
    (root / "authors.yaml").write_text("- name: Student One\n  matriculation: 1\n")
    with pytest.raises(build_report.ReportError, match="author 1 needs a name, matriculation and email"):
        fill(root, "{{ authors }}")


def test_cli_reports_a_missing_key_on_stderr_and_exits_1(root, capsys):
    (root / "report.md").write_text("{{ value: results/summary.json | full.nope }}\n")
    code = build_report.main(["--root", str(root), "--source", "report.md", "--authors", "authors.yaml", "--check"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0
    assert err == "error: report.md:1: {{ value: results/summary.json | full.nope }}: no key 'nope' in results/summary.json"


def test_wide_table_fits_the_text_width_with_numbers_right_aligned():
    pdf = build_report.ReportPDF()
    rows = [build_report.split_row(line) for line in WIDE_TABLE.splitlines()]
    size, widths, align = pdf.table_layout([rows[0]] + rows[2:], rows[1])
    assert sum(widths) <= pdf.epw + 1e-6 and size >= build_report.MIN_TABLE_PT
    assert align == ("L", "L", "L", "R", "R", "R", "R", "R")


SQUEEZED_TABLE = """\
| variant | steps | seeds | L1 | PSNR dB | SSIM | ΔPSNR dB | ΔL1 | beats copy | 10-step PSNR dB | train PSNR dB |
|---|---|---|---|---|---|---|---|---|---|---|
| best_long | 1500 | 3 | 0.0380 ± 0.0035 | 16.59 ± 0.80 | 0.797 ± 0.020 | +2.183 ± 0.797 | -1.4e-02 ± 4e-03 | 3/3 | 11.92 ± 0.39 | 17.30 ± 0.64 |
| copy-last frame (baseline) | – | – | 0.0519 | 14.41 | 0.736 | – | – | – | 11.09 | 14.63 |
| continue motion (baseline) | – | – | 0.0066 | 22.84 | 0.977 | – | – | – | – | – |
| mean frame (baseline) | – | – | 0.2634 | 10.28 | 0.425 | – | – | – | – | – |
"""


def test_a_table_squeezed_to_the_text_width_renders():
    # A table that wraps (the least widths fit, the natural ones do not): its widths fill the text width
    # and can exceed it by floating-point rounding, which fpdf refuses.
    table = SQUEEZED_TABLE.splitlines()
    pdf = build_report.ReportPDF()
    pdf.add_page()
    pdf.table_block(table)
    assert pdf.page_no() >= 1


def test_markdown_emphasis_becomes_fpdf_markup_and_literal_markers_stay_literal():
    assert build_report.fpdf_markup("*best* **0.98** `--train` __init__") == r"__best__ **0.98** \--train \__init\__"


def test_small_report_builds_to_a_pdf(root, capsys):
    (root / "docs").mkdir()
    (root / "docs" / "report.md").write_text(
        "# Title\n\n{{ authors }}\n\n## Results\n\nPSNR {{ value: results/summary.json | full.one_step.psnr.mean | .2f }}"
        " dB, α ≤ β ± σ, `code`.\n\n- one\n- two\n\n{{ table: results/summary.md }}\n\n{{ table: results/wide.md }}\n\n"
        "{{ figure: results/curve.png | A blue rectangle. | width=0.6 }}\n"
    )
    code = build_report.main(["--root", str(root), "--authors", "authors.yaml"])
    pdf = (root / "docs" / "report.pdf").read_bytes()
    pages = len(re.findall(rb"/Type /Page\b", pdf))
    assert code == 0 and pdf.startswith(b"%PDF-") and pages >= 1
    assert capsys.readouterr().out.strip().startswith(
        f"wrote docs/report.pdf ({pages} page(s), {pages} before the appendix, 5 placeholder(s), ")


def test_words_and_the_median_sentence_are_counted_in_the_prose():
    text = ("# Title\n\n**A bold first sentence.** Then a second one with six words. And a third.\n\n"
            "| a | b |\n|---|---|\n| 1.5 | two words |\n\n<!-- hidden words here -->\n\n"
            "Last paragraph, 22.09 dB after 30 000 steps.\n")
    words, median = build_report.text_statistics(text)
    assert words == 1 + 4 + 7 + 3 + 5 + 8  # the title, three sentences, the table's cells, the last paragraph
    assert median == 5.5  # sentences of 4, 7, 3 and 8 words


def test_the_body_before_the_appendix_is_held_to_its_page_limit(root, capsys):
    (root / "docs").mkdir()
    page = "\n\n".join(["A paragraph of filler text that runs on for a while. " * 12] * 6)
    (root / "docs" / "report.md").write_text(f"# Title\n\n{page}\n\n{page}\n\n## Appendix\n\nMore.\n")
    argv = ["--root", str(root), "--authors", "authors.yaml"]
    assert build_report.main(argv + ["--max-body-pages", "2"]) == 0
    assert ", 2 before the appendix," in capsys.readouterr().out
    assert build_report.main(argv + ["--max-body-pages", "1"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: the body of docs/report.pdf is 2 pages, more than --max-body-pages 1: shorten it or move "
        "material to the appendix")


def test_the_report_resolves_from_the_committed_results():
    # Every placeholder of docs/report.md names a committed results file and key (run as --check does).
    repo = SCRIPT.parents[1]
    text, count = build_report.fill_placeholders((repo / "docs" / "report.md").read_text(encoding="utf-8"), repo,
                                                 repo / "docs" / "authors.yaml")
    assert count > 50 and "{{" not in text  # the report's numbers come from placeholders


def test_the_script_also_runs_as_a_file_from_any_directory(tmp_path):
    # python scripts/build_report.py, as the documentation names it, finds the project's packages itself.
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ") and "resolved in docs/report.md" in done.stdout



HEADED_TABLE = """\
| task (training positions), as the sheet names it | validation positions, never seen in training | TCN kernel slots of layers 3 and 4 | RNN accuracy on validation | LSTM accuracy on validation | CPU s |
|---|---|---|---:|---:|---:|
| memorygen_reverse (15-28) | 0-8 | 0, 0 | 0.914 | 0.943 | 3.1 |
| memorygen (0-14) | 15-17 | 1, 0 | 0.358 | 0.552 | 2.7 |
"""


def test_long_headings_wrap_before_body_cells_and_short_headings_stay_whole():
    pdf = build_report.ReportPDF()
    lines = HEADED_TABLE.splitlines()
    rows = [build_report.split_row(line) for line in lines[:1] + lines[2:]]
    size, widths, _ = pdf.table_layout(rows, build_report.split_row(lines[1]))
    natural, body, _ = pdf.column_widths(rows, [False, False, False, True, True, True], size)
    assert size == build_report.TABLE_PT and sum(natural) > pdf.epw >= sum(widths) - 1e-6  # it must wrap
    assert all(w >= b - 1e-6 for w, b in zip(widths, body))  # but no body cell does
    assert widths[-1] >= natural[-1] - 1e-6  # and the short heading "CPU s" stays on one line


README = f"""# Project

Intro.

## Results

{build_report.README_BEGIN}
old numbers
{build_report.README_END}

## Next
"""


def test_the_readme_results_block_is_filled_checked_and_nothing_else_changes(root, capsys):
    (root / "docs").mkdir()
    (root / "docs" / "report.md").write_text("# Title\n\nText.\n")
    (root / "docs" / "readme_results.md").write_text(
        "<!-- a note -->\nPSNR {{ value: results/summary.json | full.one_step.psnr.mean | .2f }} dB, per seed "
        "{{ value: results/summary.json | per_seed | .1f }}.\n")
    (root / "README.md").write_text(README)
    argv = ["--root", str(root), "--authors", "authors.yaml"]
    assert build_report.main(argv + ["--check"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: README.md's results block is stale: run python -m scripts.build_report")
    assert build_report.main(argv) == 0
    assert (root / "README.md").read_text() == README.replace(
        "old numbers", "PSNR 31.23 dB, per seed 24.9, 22.7 and 23.9.")
    assert build_report.main(argv + ["--check"]) == 0
    (root / "docs" / "readme_results.md").write_text("{{ ref: curves }}\n")
    assert build_report.main(argv + ["--check"]) == 1
    assert "only value: placeholders here" in capsys.readouterr().err
    (root / "docs" / "readme_results.md").write_text("Text.\n")
    (root / "README.md").write_text("# Project without markers\n")
    assert build_report.main(argv) == 1
    assert "the README has no results block" in capsys.readouterr().err
    assert (root / "README.md").read_text() == "# Project without markers\n"


def test_the_committed_readme_results_are_those_of_the_committed_results():
    # The README's results section says what the results files say: rebuilt, it is unchanged.
    repo = SCRIPT.parents[1]
    results, _ = build_report.fill_placeholders((repo / "docs" / "readme_results.md").read_text(encoding="utf-8"),
                                                repo, repo / "docs" / "authors.yaml", kinds=("value",))
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert build_report.readme_with_results(readme, results) == readme, "run python -m scripts.build_report"


def test_a_caption_may_hold_values(root):
    text = fill(root, "{{ table: results/summary.md | Runs of {{ value: results/summary.json | best }}, PSNR "
                      "{{ value: results/summary.json | full.one_step.psnr.mean | .1f }} dB. | label=t }}\n\nSee {{ ref: t }}.")
    assert text.startswith("Table: **Table 1:** Runs of vit_best, PSNR 31.2 dB.\n|") and text.endswith("See Table 1.")
