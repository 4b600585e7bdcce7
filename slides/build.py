"""Build the workshop deck: ``slides/deck.md`` -> one self-contained HTML file.

    python -m slides.build                      # -> build/slides/index.html (make slides)
    python -m slides.build --check              # ... then open it in headless Chromium
    python -m slides.build --profile fast       # smaller, quicker runs for the figures

The source is Markdown: slides are separated by a line holding only ``---``; a slide names its
notebook with ``<!-- notebook: 01_autoencoder_mnist -->`` and may set a layout with
``<!-- class: title -->``; ``![caption](figure:NAME)`` inserts a figure that
``slides/figures.py`` computes now, with ``course_lib``; ``{{NAME.key}}`` inserts one of that
figure's numbers (``{{build.profile}}`` and friends describe the build); speaker notes follow a
line ``Note:``.  Scripts, styles and figures are all embedded, so the file opens with no network.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import io
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DECK = HERE / "deck.md"
TEMPLATE = HERE / "template.html"
NOTEBOOKS = REPO / "notebooks"
DEFAULT_OUT = REPO / "build" / "slides" / "index.html"

SEPARATOR = re.compile(r"^---\s*$")
FENCE = re.compile(r"^(```|~~~)")
DIRECTIVE = re.compile(r"<!--\s*(notebook|class)\s*:\s*(.*?)\s*-->")
FIGURE_REF = re.compile(r"\(figure:([A-Za-z_][A-Za-z0-9_]*)\)")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
NOTES = re.compile(r"^Note:\s*$", re.MULTILINE)


class DeckError(ValueError):
    """Something in deck.md (or a figure it asks for) is wrong; the message says where."""


@dataclass
class Slide:
    """One slide of deck.md: its Markdown, notes and directives."""

    number: int
    line: int                     # first line in deck.md (1-based)
    body: str
    notes: str = ""
    notebook: str | None = None
    classes: list = field(default_factory=list)

    @property
    def figures(self) -> list:
        return FIGURE_REF.findall(self.body)

    @property
    def facts(self) -> list:
        return PLACEHOLDER.findall(self.body + "\n" + self.notes)


def split_slides(text: str) -> list:
    """Split deck Markdown into :class:`Slide` objects (``---`` lines outside code fences)."""
    chunks, current, start, in_fence = [], [], 1, False
    for i, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line.strip()):
            in_fence = not in_fence
        if SEPARATOR.match(line) and not in_fence:
            chunks.append((start, "\n".join(current)))
            current, start = [], i + 1
        else:
            current.append(line)
    chunks.append((start, "\n".join(current)))
    if in_fence:
        raise DeckError("a code fence (```) is opened but never closed.")
    slides = []
    for start, chunk in chunks:
        if not chunk.strip():
            raise DeckError(f"empty slide at line {start} of deck.md: remove the extra '---'.")
        parts = NOTES.split(chunk, maxsplit=1)
        body, notes = parts[0], (parts[1] if len(parts) > 1 else "")
        slide = Slide(number=len(slides) + 1, line=start, body=body.strip(), notes=notes.strip())
        for key, value in DIRECTIVE.findall(body):
            if key == "notebook":
                slide.notebook = value
            else:
                slide.classes.extend(value.split())
        slide.body = DIRECTIVE.sub("", slide.body).strip()
        slides.append(slide)
    return slides


def notebook_path(name: str) -> Path:
    """The notebook a slide points to (``01_autoencoder_mnist`` or with ``.ipynb``)."""
    path = NOTEBOOKS / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
        raise DeckError(f"notebook '{name}' does not exist in notebooks/ (known: {known}).")
    return path


def check_deck(slides: list, figure_names) -> None:
    """Raise :class:`DeckError` naming the slide and line of every unknown reference."""
    problems = []
    for s in slides:
        where = f"slide {s.number} (deck.md line {s.line})"
        for name in s.figures:
            if name not in figure_names:
                problems.append(f"{where}: unknown figure '{name}' (known: "
                                f"{', '.join(sorted(figure_names))}).")
        for name, _ in s.facts:
            if name != "build" and name not in figure_names:
                problems.append(f"{where}: '{{{{{name}...}}}}' names no figure.")
        if s.notebook:
            try:
                notebook_path(s.notebook)
            except DeckError as err:
                problems.append(f"{where}: {err}")
    if problems:
        raise DeckError("deck.md has problems:\n  " + "\n  ".join(problems))


def figure_png(fig, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def compute_figures(names, profile=None, log=print) -> tuple:
    """Run the figure functions named in the deck: ``({name: png}, {name: facts}, run)``."""
    import matplotlib

    matplotlib.use("Agg")
    from slides import figures

    run = figures.Run(profile)
    pngs, facts = {}, {}
    for name in names:
        start = time.perf_counter()
        try:
            fig, facts[name] = figures.FIGURES[name](run)
        except Exception as err:  # say which figure failed, keep the original traceback
            raise DeckError(f"figure '{name}' failed: {type(err).__name__}: {err}") from err
        pngs[name] = figure_png(fig)
        log(f"  figure {name:24s} {time.perf_counter() - start:6.1f} s")
    return pngs, facts, run


def fill_facts(text: str, facts: dict, slide: Slide) -> str:
    """Replace ``{{name.key}}`` by the computed value (HTML-escaped)."""
    def sub(match):
        name, key = match.groups()
        if key not in facts.get(name, {}):
            raise DeckError(f"slide {slide.number} (deck.md line {slide.line}): "
                            f"'{{{{{name}.{key}}}}}' is not one of "
                            f"{sorted(facts.get(name, {}))}.")
        return html.escape(str(facts[name][key]))
    return PLACEHOLDER.sub(sub, text)


def markdown_renderer():
    """markdown-it-py (CommonMark + tables) with Pygments highlighting for code blocks."""
    from markdown_it import MarkdownIt
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    def code(source, lang, _attrs):
        try:
            lexer = get_lexer_by_name(lang or "text")
        except ClassNotFound:
            lexer = get_lexer_by_name("text")
        return highlight(source, lexer, HtmlFormatter(nowrap=True))

    return MarkdownIt("commonmark", {"html": True, "highlight": code}).enable("table")


def pygments_css() -> str:
    """The code-highlighting styles, embedded in the deck."""
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="friendly").get_style_defs(".slide pre")


def render_slide(slide: Slide, md, pngs: dict, facts: dict, total: int) -> str:
    """One ``<section class="slide">``, figures embedded as PNG data URIs."""
    body = md.render(fill_facts(slide.body, facts, slide))
    for name, png in pngs.items():
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        body = body.replace(f'src="figure:{name}"', f'src="{uri}"')
    notes = md.render(fill_facts(slide.notes, facts, slide)) if slide.notes else ""
    footer, nb_attr = "", ""
    if slide.notebook:
        name = notebook_path(slide.notebook).name
        footer = f'<span class="notebook">Notebook {name[:2]}: notebooks/{name}</span>'
        nb_attr = f' data-notebook="{html.escape(name)}"'
    elif "title" not in slide.classes:   # agenda, summary: the whole course
        footer = '<span class="notebook">Notebooks 01-09: notebooks/ (course map: README.md)</span>'
    classes = " ".join(["slide", *slide.classes])
    return (f'<section class="{classes}" id="slide-{slide.number}"{nb_attr}>\n{body}'
            f'<footer>{footer}<span class="number">{slide.number} / {total}</span></footer>\n'
            + (f'<aside class="notes">{notes}</aside>\n' if notes else "") + "</section>")


def build(out=DEFAULT_OUT, profile=None, deck=None, log=print) -> dict:
    """Build the deck into ``out``; return a summary (slides, figures, profile, data, seconds,
    and ``facts``: every number the figures computed, by figure name).

    The HTML is written to a temporary file first and renamed, so a failed build never leaves
    half a deck behind.
    """
    start = time.perf_counter()
    deck = Path(deck) if deck is not None else DECK
    if not deck.is_file():
        raise DeckError(f"{deck} does not exist; the deck's source is slides/deck.md.")
    slides = split_slides(deck.read_text(encoding="utf-8"))
    from slides import figures

    check_deck(slides, figures.FIGURES)
    wanted = []
    for s in slides:
        for name in [*s.figures, *(n for n, _ in s.facts)]:
            if name != "build" and name not in wanted:
                wanted.append(name)
    log(f"Building {len(slides)} slides with {len(wanted)} figures from real runs ...")
    pngs, facts, run = compute_figures(wanted, profile=profile, log=log)
    sources = ", ".join(f"{k}: {v}" for k, v in sorted(run.sources.items())) or "none"
    facts["build"] = {"profile": run.profile.name, "date": _dt.date.today().isoformat(),
                      "data": sources, "seconds": f"{time.perf_counter() - start:.0f}"}
    md = markdown_renderer()
    title = next((line[2:].strip() for line in slides[0].body.splitlines()
                  if line.startswith("# ")), "Slides")
    sections = "\n".join(render_slide(s, md, pngs, facts, len(slides)) for s in slides)
    page = (TEMPLATE.read_text(encoding="utf-8")
            .replace("{{title}}", html.escape(title))
            .replace("/*{{pygments}}*/", pygments_css())
            .replace("<!--{{slides}}-->", sections))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    summary = {"out": str(out), "slides": len(slides), "figures": len(pngs),
               "profile": run.profile.name, "data": sources,
               "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - start, 1),
               "facts": facts}
    log(f"Wrote {out} ({summary['bytes'] / 1e6:.1f} MB): {summary['slides']} slides, "
        f"{summary['figures']} figures, profile {summary['profile']}, data {sources}, "
        f"{summary['seconds']} s.")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="HTML file to write")
    parser.add_argument("--deck", default=str(DECK), help="Markdown source (default slides/deck.md)")
    parser.add_argument("--profile", default=None,
                        help="fast, workshop or full (default: $COURSE_PROFILE or workshop)")
    parser.add_argument("--check", action="store_true",
                        help="then open the deck in headless Chromium: slide count, navigation, "
                             "console errors, network requests; screenshot next to the HTML")
    args = parser.parse_args(argv)
    try:
        summary = build(args.out, profile=args.profile, deck=args.deck)
    except DeckError as err:
        print(f"Deck not built: {err}", file=sys.stderr)
        return 1
    if args.check:
        from slides.browser_check import BrowserUnavailable, check_deck_in_browser

        shot = Path(args.out).with_name("title-slide.png")
        try:
            report = check_deck_in_browser(args.out, expected_slides=summary["slides"],
                                           screenshot=shot)
        except BrowserUnavailable as err:
            print(f"Browser check not run: {err}", file=sys.stderr)
            return 1
        print(report.summary())
        return 0 if report.ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
