"""Build the submission PDF: fill docs/report.md's placeholders from results files, render with fpdf2.

    python -m scripts.build_report                    # docs/report.md -> docs/report.pdf
    python scripts/build_report.py                    # the same, run as a file
    python -m scripts.build_report --check            # only resolve the placeholders

Placeholders (paths relative to the repository root, or to --root):
    {{ value: results/vit/summary.json | full.one_step.psnr.mean | .2f }}
        one number or string from a JSON file by dotted path (list indices allowed: runs.0.loss);
        the last field is a Python format spec and may be left out. A list of numbers or strings (the
        values per seed) is written as prose, each formatted: "24.85, 22.70 and 23.91".
    {{ table: results/timeseries/summary.md | caption | label=name }}
        a Markdown table file, included as is; with a caption it is numbered (Table N, caption above)
    {{ caption: caption | label=name }}                   the numbered caption of the hand-written table below it
    {{ figure: results/timeseries/curve.png | caption | width=0.8 | label=name }}
        a figure scaled to a fraction of the text width (default 1), numbered (Figure N), with its caption
    {{ ref: name }}                                       "Table N" or "Figure N" of the labelled one
    {{ authors }}                                         docs/authors.yaml as a table; while an entry is
                                                          still its [placeholder], the build warns on stderr
Tables and figures are numbered in the order they appear; label= is optional; a caption may hold value
placeholders. Table, caption, figure and
authors placeholders stand alone on their line. HTML comments are removed before anything else, so a
placeholder whose results do not exist yet can wait inside <!-- -->.
A missing file, key or label stops the build with one line naming the placeholder (exit 1), never a blank.

The README's results section is filled the same way (value placeholders only) from docs/readme_results.md
into the lines between README_BEGIN and README_END, so it says what the report says; --check fails when the
README's copy is stale.
"""
import argparse
import json
import os
import re
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

import markdown
import matplotlib
import yaml
from fpdf import FPDF, FontFace, TextStyle
from PIL import Image


REPO_ROOT = Path(__file__).resolve().parents[1]
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
AUTHOR_KEYS = ("name", "matriculation", "email")
UNFILLED = re.compile(r"^\[.*\]$")  # an author field still in square brackets: the template's placeholder
AUTHORS_PLACEHOLDER = re.compile(r"\{\{\s*authors\s*\}\}")
FONT_FILES = {"": "", "B": "-Bold", "I": "-Oblique", "BI": "-BoldOblique"}

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
INNERMOST = re.compile(r"\{\{((?:(?!\{\{).)*?)\}\}")  # a placeholder with none inside it
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*$")
FIGURE = re.compile(r"^!\[(?P<caption>.*)\]\((?P<path>[^()]+)\)\{width=(?P<width>[\d.]+)\}$")
CAPTION = re.compile(r"^Table: (?P<caption>.+)$")  # the line above a numbered table
NUMBERED = ("table", "caption", "figure")
BLOCKS = ("table", "caption", "figure", "authors")
SEPARATOR_CELL = re.compile(r"^:?-+:?$")
NUMBER = re.compile(r"^[-+−]?[\d.,]+(e[-+]?\d+)?\s*(±\s*[\d.,]+(e[-+]?\d+)?)?\s*[%×x]?$", re.IGNORECASE)

APPENDIX = "Appendix"  # the level-2 heading that ends the body
README_BEGIN = "<!-- results: written by python -m scripts.build_report from docs/readme_results.md; edit that file -->"
README_END = "<!-- end of results -->"

BODY_PT, TABLE_PT, MIN_TABLE_PT = 10, 9, 6
WHOLE_HEADINGS_PT = 7.5  # a table shrinks down to this size before one of its headings wraps
CELL_PAD = 1.5  # mm left and right of a table cell's text


class ReportError(Exception):
    """A placeholder that cannot be resolved or a source that cannot be rendered."""


def lookup(data, dotted):
    """Follow 'a.b.0.c' through nested dicts and lists; raise KeyError naming the first missing step."""
    for key in dotted.split("."):
        if isinstance(data, list) and key.lstrip("-").isdigit() and -len(data) <= int(key) < len(data):
            data = data[int(key)]
        elif isinstance(data, dict) and key in data:
            data = data[key]
        else:
            raise KeyError(key)
    return data


def read_table(path):
    """The first Markdown table in a file (a results summary may have a heading and notes around it).

    Checked to be a header row, a separator row and body rows.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("|")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].lstrip().startswith("|")), len(lines))
    table = lines[start:end]
    if len(table) < 3 or not all(SEPARATOR_CELL.match(cell.strip()) for cell in split_row(table[1])):
        raise ValueError(f"{path.name} holds no Markdown table (header row, separator row, body rows)")
    return "\n".join(table)


def read_authors(path):
    """docs/authors.yaml (a list of name, matriculation, email) as a Markdown table."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list) or not entries:
        raise ValueError("must be a non-empty list of authors")
    rows = ["| Name | Matriculation number | E-mail |", "|---|---|---|"]
    for number, entry in enumerate(entries, 1):
        fields = [str(entry.get(key) or "").strip() for key in AUTHOR_KEYS] if isinstance(entry, dict) else []
        if len(fields) < len(AUTHOR_KEYS) or not all(fields):
            raise ValueError(f"author {number} needs a name, matriculation and email")
        rows.append("| " + " | ".join(fields) + " |")
    return "\n".join(rows)


def unfilled_authors(path):
    """How many entries of an authors file are still the template's placeholder (a field in square brackets)."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    return sum(1 for entry in entries if isinstance(entry, dict)
               and any(UNFILLED.match(str(entry.get(key) or "").strip()) for key in AUTHOR_KEYS))


def prose_list(items):
    """['a'] -> 'a', ['a', 'b', 'c'] -> 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def options(fields, allowed):
    """key=value fields -> dict; raises ValueError for another key or a field without '='."""
    found = {}
    for field in fields:
        key, equals, value = field.replace(" ", "").partition("=")
        if not equals or key not in allowed:
            raise ValueError(f"'{field}' is not one of {', '.join(f'{name}=...' for name in allowed)}")
        found[key] = value
    return found


def resolve(kind, fields, root, authors, json_cache, number=None, labels=None):
    """The Markdown text one placeholder stands for; raises OSError, KeyError or ValueError.

    number: the table's or figure's number ("Table 3"), labels: label -> number, for ref.
    """
    if kind == "authors" and not fields:
        return read_authors(authors)
    if kind == "value" and len(fields) in (2, 3):
        path = root / fields[0]
        if path not in json_cache:
            json_cache[path] = json.loads(path.read_text(encoding="utf-8"))
        value = lookup(json_cache[path], fields[1])
        spec = fields[2] if len(fields) == 3 else ""
        if isinstance(value, list) and value and not any(isinstance(item, (dict, list)) for item in value):
            return prose_list([format(item, spec) for item in value])  # per-seed values: "a, b and c"
        if isinstance(value, (dict, list)):
            raise ValueError(f"'{fields[1]}' is a {type(value).__name__}, not a value")
        return format(value, spec)
    if kind == "table" and 1 <= len(fields) <= 3:
        options(fields[2:], ("label",))
        table = read_table(root / fields[0])
        return f"Table: **{number}:** {fields[1]}\n{table}" if len(fields) > 1 and fields[1] else table
    if kind == "caption" and 1 <= len(fields) <= 2:
        options(fields[1:], ("label",))
        return f"Table: **{number}:** {fields[0]}"
    if kind == "figure" and 2 <= len(fields) <= 4:
        path, width = root / fields[0], options(fields[2:], ("width", "label")).get("width", "1")
        with Image.open(path):  # fails now, not at render time, for a missing or broken image
            pass
        if not re.fullmatch(r"1(\.0*)?|0?\.\d*[1-9]\d*", width):
            raise ValueError(f"'width={width}' is not width=W with 0 < W <= 1")
        return f"![**{number}:** {fields[1]}]({path.resolve()}){{width={width}}}"
    if kind == "ref" and len(fields) == 1:
        if fields[0] not in labels:
            raise ValueError(f"no table or figure has label={fields[0]}")
        return labels[fields[0]]
    raise ValueError("unknown placeholder; use value:, table:, caption:, figure:, ref: or authors")


def parse(match):
    """A placeholder's match -> (kind, fields)."""
    kind, _, rest = match.group(1).strip().partition(":")
    return kind.strip(), [field.strip() for field in rest.split("|")] if rest.strip() else []


def numbering(text, source_name):
    """Number the tables and figures in the order they appear: ({match start: 'Table 2'}, {label: 'Table 2'}).

    A table placeholder without a caption is not numbered."""
    numbers, labels, counts = {}, {}, {"Table": 0, "Figure": 0}
    for match in PLACEHOLDER.finditer(text):
        kind, fields = parse(match)
        if kind not in NUMBERED or (kind == "table" and len(fields) < 2):
            continue
        name = "Figure" if kind == "figure" else "Table"
        counts[name] += 1
        numbers[match.start()] = f"{name} {counts[name]}"
        for field in fields[1:]:
            key, _, value = field.replace(" ", "").partition("=")
            if key == "label" and value in labels:
                line_no = text.count("\n", 0, match.start()) + 1
                raise ReportError(f"{source_name}:{line_no}: {match.group()}: label={value} is also {labels[value]}")
            if key == "label":
                labels[value] = numbers[match.start()]
    return numbers, labels


def fill_placeholders(text, root, authors, source_name="report.md", kinds=None):
    """Remove HTML comments and replace every {{ }} placeholder; return (filled text, number replaced).

    kinds: the placeholder kinds allowed (default all). Values are filled first, so a caption can hold them.
    """
    text = COMMENT.sub(lambda m: "\n" * m.group().count("\n"), text)  # keep line numbers for errors
    json_cache, count = {}, 0
    numbers, labels = {}, {}

    def replace(match):
        nonlocal count
        kind, fields = parse(match)
        line_no = text.count("\n", 0, match.start()) + 1
        where = f"{source_name}:{line_no}: {match.group()}"
        line = text[text.rfind("\n", 0, match.start()) + 1:].split("\n", 1)[0]
        if kinds is not None and kind not in kinds:
            raise ReportError(f"{where}: only {', '.join(f'{k}:' for k in kinds)} placeholders here")
        if kind in BLOCKS and line.strip() != match.group():
            raise ReportError(f"{where}: must stand alone on its line")
        try:
            replacement = resolve(kind, fields, Path(root), Path(authors), json_cache, numbers.get(match.start()),
                                  labels)
        except KeyError as error:
            raise ReportError(f"{where}: no key '{error.args[0]}' in {fields[0]}") from None
        except FileNotFoundError:
            raise ReportError(f"{where}: no file {fields[0] if fields else authors}") from None
        except (OSError, ValueError, TypeError, yaml.YAMLError) as error:
            raise ReportError(f"{where}: {str(error).splitlines()[0]}") from None
        count += 1
        return replacement

    text = INNERMOST.sub(lambda match: replace(match) if parse(match)[0] == "value" else match.group(), text)
    numbers, labels = numbering(text, source_name)
    return PLACEHOLDER.sub(replace, text), count


def readme_with_results(readme, results):
    """The README's text with the lines between README_BEGIN and README_END replaced by results."""
    begin, end = readme.find(README_BEGIN), readme.find(README_END)
    if begin < 0 or end < begin:
        raise ReportError(f"the README has no results block: add the lines '{README_BEGIN}' and '{README_END}'")
    return readme[:begin + len(README_BEGIN)] + "\n" + results.strip("\n") + "\n" + readme[end:]


def split_row(line):
    """'| a | b \\| c |' -> ['a', 'b | c']."""
    line = line.strip().removeprefix("|")
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]


def plain(text):
    """Cell or caption text without Markdown markup, for measuring."""
    return re.sub(r"\*\*|(?<!\w)\*|\*(?!\w)|`", "", text)


def is_code(cell):
    """A table cell that is one code span, set in the mono font."""
    return re.fullmatch(r"`[^`]+`", cell) is not None


def fpdf_markup(text):
    """Standard Markdown emphasis to fpdf2's inline markup (**bold**, __italics__); code spans lose their ticks."""
    for marker in ("__", "--", "~~"):
        text = text.replace(marker, "\\" + marker)  # literal in Markdown, markup in fpdf2
    text = re.sub(r"`([^`]*)`", r"\1", text)
    return re.sub(r"(?<![*\w])\*(?!\*)(.+?)(?<!\*)\*(?![*\w])", r"__\1__", text)


def split_blocks(text):
    """Filled Markdown -> [(kind, payload)]: heading, table (list of lines), figure, text (Markdown)."""
    blocks, pending, fenced = [], [], False

    def flush():
        if "".join(pending).strip():
            blocks.append(("text", "\n".join(pending)))
        pending.clear()

    for line in text.splitlines():
        fence = line.lstrip().startswith("```")
        fenced ^= fence
        kind = (None if fenced or fence else "heading" if HEADING.match(line) else
                "figure" if FIGURE.match(line) else "caption" if CAPTION.match(line) else
                "table" if line.lstrip().startswith("|") else None)
        if kind is None:
            pending.append(line)
        elif kind == "table" and not pending and blocks and blocks[-1][0] == "table":
            blocks[-1][1].append(line)
        else:
            flush()
            pattern = {"heading": HEADING, "figure": FIGURE, "caption": CAPTION}.get(kind)
            blocks.append((kind, [line] if kind == "table" else pattern.match(line)))
    flush()
    return blocks


class ReportPDF(FPDF):
    """A4 with DejaVu fonts and 'page / pages' in the footer."""

    def __init__(self):
        super().__init__(format="A4")
        self.body_pages = None  # pages before the level-2 heading "Appendix" (all pages without one)
        self.set_margins(20, 18, 20)
        self.set_auto_page_break(True, margin=18)
        for family, stem in (("DejaVu", "DejaVuSans"), ("DejaVuMono", "DejaVuSansMono")):
            for style, suffix in FONT_FILES.items():
                self.add_font(family, style, FONT_DIR / f"{stem}{suffix}.ttf")

    def footer(self):
        self.set_y(-12)
        self.set_font("DejaVu", "", 8)
        self.cell(0, 5, f"{self.page_no()} / {{nb}}", align="C")

    def heading_block(self, match):
        level, title = len(match.group(1)), plain(match.group(2))
        size, space = {1: (17, 2), 2: (13, 6), 3: (11, 4)}.get(level, (10, 3))
        if self.will_page_break(space + 30):  # keep a heading with the start of its section
            self.add_page()
        self.ln(space if self.get_y() > self.t_margin + 1 else 0)
        if level == 2 and title == APPENDIX:
            self.body_pages = self.page_no() - (self.get_y() <= self.t_margin + 1)
        self.set_font("DejaVu", "B", size)
        if level in (2, 3):  # the PDF outline: sections and subsections
            self.start_section(title, level=level - 2)
        self.multi_cell(0, size * 0.5, title, align="C" if level == 1 else "L", new_x="LMARGIN", new_y="NEXT")
        self.ln(2 if level == 1 else 0)

    def text_block(self, text):
        self.set_font("DejaVu", "", BODY_PT)
        html = markdown.markdown(text, extensions=["fenced_code", "sane_lists"])
        html = re.sub(r"<(p|ul|ol)>", r'<\1 line-height="1.3">', html)  # fpdf2's default spacing is 1.0
        # spacing above each block only; a zero margin would mean fpdf2's default (one font size)
        above, below = 2.2, 0.01
        self.write_html(html, li_prefix_color=(60, 60, 60), tag_styles={
            "code": FontFace(family="DejaVuMono", size_pt=BODY_PT - 1),
            "pre": TextStyle(font_family="DejaVuMono", font_size_pt=BODY_PT - 1.5, t_margin=above, b_margin=below),
            "blockquote": TextStyle(color="#7a2e00", l_margin=6, t_margin=above, b_margin=below),
            "li": TextStyle(l_margin=5, t_margin=0.8),
            **{tag: TextStyle(t_margin=above, b_margin=below) for tag in ("p", "ul", "ol")},
        })
        self.ln(above)

    def column_widths(self, rows, numeric, size):
        """Per column at this font size: the width (mm) that keeps every cell on one line, the width that keeps
        every body cell on one line (headings may wrap), and the least width: the longest word of the heading
        and of text cells, but whole numeric cells (numbers never wrap)."""
        natural, body, least = ([0.0] * len(numeric) for _ in range(3))
        for r, row in enumerate(rows):
            for c, cell in enumerate(row):
                self.set_font("DejaVuMono" if is_code(cell) else "DejaVu", "B" if r == 0 or "**" in cell else "", size)
                text = plain(cell)
                pieces = [text] if numeric[c] and r > 0 else text.split(" ")  # a no-break space joins words
                width = self.get_string_width(text) + 2 * CELL_PAD + 0.5
                natural[c] = max(natural[c], width)
                if r > 0:
                    body[c] = max(body[c], width)
                least[c] = max([least[c]] + [self.get_string_width(p) + 2 * CELL_PAD + 0.5 for p in pieces])
        return natural, [max(b, m) for b, m in zip(body, least)], least

    def table_layout(self, rows, spec):
        """Font size, column widths (mm, summing to at most the text width) and alignments of a table.

        Numeric columns align right unless the separator row says otherwise (':--', ':-:', '--:')."""
        numeric = []
        for c in range(len(spec)):
            body = [plain(row[c]) for row in rows[1:] if plain(row[c]) not in ("", "—", "-")]
            numeric.append(bool(body) and all(NUMBER.match(text) for text in body))
        align = tuple("C" if cell.startswith(":") and cell.endswith(":") else
                      "R" if cell.endswith(":") or (numeric[c] and not cell.startswith(":")) else "L"
                      for c, cell in enumerate(spec))
        # Largest font at which every body cell stays on one line (headings may wrap); failing that, the
        # largest at which text cells wrap only between words; at the smallest font, whatever still does
        # not fit is squeezed.
        sizes = [TABLE_PT - 0.5 * i for i in range(int((TABLE_PT - MIN_TABLE_PT) / 0.5) + 1)]
        for size in (size for size in sizes if size >= WHOLE_HEADINGS_PT):  # short headings: never wrapped
            natural, _, _ = self.column_widths(rows, numeric, size)
            if sum(natural) <= self.epw:
                return size, natural, align
        for size in sizes:
            natural, body, _ = self.column_widths(rows, numeric, size)
            if sum(natural) <= self.epw:
                return size, natural, align
            if sum(body) <= self.epw:
                # The slack unwraps whole headings, the nearest to one line first; what is left widens the
                # rest in proportion to what they lack.
                widths, slack = list(body), self.epw - sum(body)
                for c in sorted(range(len(widths)), key=lambda c: natural[c] - body[c]):
                    if natural[c] - body[c] <= slack:
                        slack -= natural[c] - body[c]
                        widths[c] = natural[c]
                lacking = [n - w for n, w in zip(natural, widths)]
                return size, [w + slack * d / sum(lacking) for w, d in zip(widths, lacking)], align
        for size in sizes:
            natural, _, least = self.column_widths(rows, numeric, size)
            if sum(least) <= self.epw:
                slack = [n - m for n, m in zip(natural, least)]
                return size, [m + (self.epw - sum(least)) * s / sum(slack) for m, s in zip(least, slack)], align
        return size, [m * self.epw / sum(least) for m in least], align

    def table_block(self, lines):
        rows = [split_row(line) for line in lines]
        if len(rows) < 2 or not all(SEPARATOR_CELL.match(cell) for cell in rows[1]):
            raise ReportError(f"table without a separator row: {lines[0].strip()}")
        spec, rows = rows[1], [rows[0]] + rows[2:]
        if any(len(row) > len(spec) for row in rows):
            raise ReportError(f"table row with more cells than its separator row: {lines[0].strip()}")
        rows = [row + [""] * (len(spec) - len(row)) for row in rows]
        size, widths, align = self.table_layout(rows, spec)
        self.ln(1)
        self.set_font("DejaVu", "", size)
        self.set_draw_color(120)
        # Scaled widths can sum to a hair more than the text width in floating point; fpdf refuses that.
        with self.table(width=min(sum(widths), self.epw), col_widths=widths, text_align=align, markdown=True,
                        borders_layout="HORIZONTAL_LINES", line_height=size / self.k * 1.35,
                        padding=(0.7, CELL_PAD), headings_style=FontFace(emphasis="BOLD", fill_color=235)) as table:
            for r, row in enumerate(rows):
                cells = table.row()
                for cell in row:
                    cells.cell(fpdf_markup(cell), style=FontFace("DejaVuMono") if r and is_code(cell) else None)
        self.ln(3)

    def caption_block(self, match):
        """A table's numbered caption, kept on one page with the table's first rows."""
        caption = fpdf_markup(match["caption"])
        self.set_font("DejaVu", "", 9)
        if self.will_page_break(5 * (1 + self.get_string_width(plain(caption)) // self.epw) + 25):
            self.add_page()
        self.ln(1)
        self.multi_cell(0, 4.5, caption, align="C", markdown=True, new_x="LMARGIN", new_y="NEXT")

    def figure_block(self, match):
        path, caption = Path(match["path"]), fpdf_markup(match["caption"])
        with Image.open(path) as image:
            aspect = image.height / image.width
        width = self.epw * float(match["width"])
        self.set_font("DejaVu", "", 9)
        caption_height = 5 * (1 + self.get_string_width(plain(caption)) // self.epw) + 4
        height = width * aspect
        if height > self.eph - caption_height:  # a tall figure shrinks to fit one page
            height = self.eph - caption_height
            width = height / aspect
        if self.will_page_break(height + caption_height):
            self.add_page()
        self.ln(1)
        self.image(str(path), x=self.l_margin + (self.epw - width) / 2, w=width, h=height)
        self.multi_cell(0, 4.5, caption, align="C", markdown=True,
                        new_x="LMARGIN", new_y="NEXT")
        self.ln(3)


def render_pdf(text, out):
    """Render filled Markdown to a PDF at out; return (page count, body pages: those before the appendix)."""
    pdf = ReportPDF()
    if "SOURCE_DATE_EPOCH" in os.environ:  # reproducible bytes for a committed PDF
        pdf.set_creation_date(datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), timezone.utc))
    pdf.add_page()
    for kind, payload in split_blocks(text):
        getattr(pdf, f"{kind}_block")(payload)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))
    return pdf.pages_count, pdf.body_pages or pdf.pages_count


SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?]\*\*))\s+(?=[\w*(`])")  # also after a bold sentence
WORD = re.compile(r"[^\W_](?:[\w.,'’/-]*\w)?")
PROSE_START = re.compile(r"^(\*{1,2}|\()?[A-Za-z(]")  # a paragraph of text, not a table, figure, list or heading


def text_statistics(markdown_text):
    """(words, median words per sentence) of a filled report: words in every line of text (prose, captions,
    table cells, lists), sentences in its prose paragraphs only (what a reader reads as sentences)."""
    text = COMMENT.sub("", markdown_text)
    words = len(WORD.findall(re.sub(r"[`*|#]", " ", text)))
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if PROSE_START.match(paragraph) and not paragraph.startswith(("Table:", "![")):
            sentences += [len(WORD.findall(sentence)) for sentence in SENTENCE_END.split(paragraph.replace("\n", " "))]
    return words, statistics.median(sentences) if sentences else 0


def main(argv=None):
    # Only the standard library and the document packages: it runs as a file too (python scripts/build_report.py).
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="folder all other paths start from")
    parser.add_argument("--source", default="docs/report.md")
    parser.add_argument("--out", default="docs/report.pdf")
    parser.add_argument("--authors", default="docs/authors.yaml")
    parser.add_argument("--readme", default="README.md", help="the README whose results block is filled")
    parser.add_argument("--readme-source", default="docs/readme_results.md",
                        help="the source of the README's results block (skipped when the file does not exist)")
    parser.add_argument("--max-body-pages", type=int, default=8,
                        help="fail when the pages before the '## Appendix' heading are more (the sheet's brief report)")
    parser.add_argument("--check", action="store_true",
                        help="only resolve the placeholders and check that the README's results block is current")
    args = parser.parse_args(argv)
    source, readme_source, readme = args.root / args.source, args.root / args.readme_source, args.root / args.readme
    try:
        if not source.is_file():
            raise ReportError(f"no source file {source}")
        filled, count = fill_placeholders(source.read_text(encoding="utf-8"), args.root,
                                          args.root / args.authors, args.source)
        if AUTHORS_PLACEHOLDER.search(source.read_text(encoding="utf-8")) and unfilled_authors(args.root / args.authors):
            print(f"warning: {args.authors} names no author yet: replace its [placeholder] with each student's name, "
                  f"matriculation number and e-mail", file=sys.stderr)
        todos = len(re.findall(r"\bTODO\b", filled))
        if todos:
            print(f"note: {todos} TODO marker(s) remain in {args.source}", file=sys.stderr)
        if readme_source.is_file():
            results, _ = fill_placeholders(readme_source.read_text(encoding="utf-8"), args.root,
                                           args.root / args.authors, args.readme_source, kinds=("value",))
            if not readme.is_file():
                raise ReportError(f"no README {readme} for the results of {args.readme_source}")
            old = readme.read_text(encoding="utf-8")
            new = readme_with_results(old, results)
            if args.check and new != old:
                raise ReportError(f"{args.readme}'s results block is stale: run python -m scripts.build_report")
        if args.check:
            print(f"ok: {count} placeholder(s) resolved in {args.source}")
            return 0
        pages, body = render_pdf(filled, args.root / args.out)
        if body > args.max_body_pages:
            raise ReportError(f"the body of {args.out} is {body} pages, more than --max-body-pages "
                              f"{args.max_body_pages}: shorten it or move material to the appendix")
        if readme_source.is_file() and new != old:
            temporary = readme.with_name(readme.name + ".tmp")  # never a half-written README
            temporary.write_text(new, encoding="utf-8")
            os.replace(temporary, readme)
            print(f"wrote {args.readme}'s results block from {args.readme_source}")
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    words, median = text_statistics(filled)
    print(f"wrote {args.out} ({pages} page(s), {body} before the appendix, {count} placeholder(s), {words} words, "
          f"median sentence {median:g} words)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
