"""The man page tvmaniac-refreshd(1), made from the argument parser and the reference pages of
the documentation (docs/reference/), so that it says what `--help` and the documentation say.

``python scripts/manpage.py docs > man/tvmaniac-refreshd.1`` (``make man``) writes it; a unit
test fails when the committed page differs from what this makes. A build script, not part of
the installed package: the wheel ships the page, not the code that writes it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from tvmaniac_refreshd import __version__
from tvmaniac_refreshd.cli.parser import build_parser
from tvmaniac_refreshd.core.locations import APP

# The reference pages the man page carries, each as a section named by the page's title.
REFERENCE_PAGES = (
    "exit-codes.md",
    "refresh-timing.md",
    "alerts.md",
    "files.md",
    "environment.md",
)
SUMMARY = "keep an OAuth session alive: tokens in the OS keyring, refreshed in time"
SEE_ALSO = r"\fBgitcredentials\fR(7), \fBsystemd.timer\fR(5), \fBsecret-tool\fR(1)"


def escape(text: str) -> str:
    """Text as roff shows it: backslashes, and a leading dot or quote that would be a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def inline(text: str) -> str:
    """Markdown's `code` and **bold** as roff bold, a [link](target) as its text; the rest
    escaped."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    parts = re.split(r"(`[^`]+`|\*\*[^*]+\*\*)", text)
    out = []
    for part in parts:
        if part.startswith("`") or part.startswith("**"):
            out.append(r"\fB" + escape(part.strip("`*")) + r"\fR")
        else:
            out.append(escape(part))
    return "".join(out)


def reference_pages(docs: Path) -> list[str]:
    """Return the text of each page in REFERENCE_PAGES, from the documentation at ``docs``."""
    return [(docs / "reference" / name).read_text(encoding="utf-8") for name in REFERENCE_PAGES]


def render(parser: argparse.ArgumentParser, pages: list[str]) -> str:
    """Return the whole page in roff (man macros)."""
    lines = [
        f'.TH {escape(APP.upper())} 1 "" "{escape(APP)} {__version__}" "User Commands"',
        ".SH NAME",
        f"{escape(APP)} \\- {SUMMARY}",
        ".SH SYNOPSIS",
        f".B {escape(APP)}",
        "[\\fIGLOBAL OPTIONS\\fR] \\fIVERB\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        *_preformatted_paragraphs(parser.description or ""),
        ".SH GLOBAL OPTIONS",
        *_options(parser),
        ".SH COMMANDS",
    ]
    for path, child in _verbs(parser):
        lines += [".SS " + escape(path), ".nf", escape(_usage(child)), ".fi"]
        lines += _preformatted_paragraphs(child.description or "")
        lines += _options(child)
    for page in pages:
        title, body = _split_title(page)
        lines += [".SH " + escape(title.upper()), *_markdown(body)]
    lines += [".SH SEE ALSO", SEE_ALSO, ""]
    return "\n".join(lines)


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().removeprefix("usage:").split())


def _verbs(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse has no public walk of its sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                path = f"{prefix} {name}".strip()
                has_own = any(isinstance(a, argparse._SubParsersAction) for a in child._actions)
                if not has_own:
                    yield path, child
                yield from _verbs(child, path)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = (
                ""
                if action.nargs == 0
                else f" \\fI{escape(str(action.metavar or action.dest.upper()))}\\fR"
            )
            if action.choices and action.nargs != 0:
                metavar = " " + escape("|".join(str(c) for c in action.choices))
            names = ", ".join(r"\fB" + escape(flag) + r"\fR" for flag in action.option_strings)
            lines += [".TP", names + metavar]
        elif action.choices:
            lines += [".TP", escape("|".join(str(c) for c in action.choices))]
        else:
            continue
        lines.append(escape(" ".join((action.help or "").replace("%%", "%").split())))
    return lines


def _preformatted_paragraphs(text: str) -> list[str]:
    """The parser's texts are laid out by hand (RawDescriptionHelpFormatter): keep their lines."""
    lines: list[str] = []
    for block in text.strip().split("\n\n"):
        lines += [".PP", ".nf", escape(block), ".fi"]
    return lines


def _split_title(page: str) -> tuple[str, str]:
    first, _, body = page.partition("\n")
    if not first.startswith("# "):
        raise ValueError(f"a reference page starts with its title: {first!r}")
    return first[2:].strip(), body.strip()


def _markdown(text: str) -> list[str]:
    """The little Markdown the reference pages use: paragraphs, lists, tables, code blocks,
    ## headings."""
    lines: list[str] = []
    in_code = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith("```"):
            lines.append(".fi" if in_code else ".nf")
            in_code = not in_code
        elif in_code:
            lines.append(escape(line) or "\\&")
        elif not line:
            lines.append(".PP")
        elif line.startswith("## "):
            lines.append(".SS " + escape(line[3:]))
        elif line.startswith("- "):
            lines += [".IP \\(bu 2", inline(line[2:])]
        elif line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if all(set(cell) <= set("-: ") for cell in cells):
                continue  # the header rule
            lines += [".TP", inline(cells[0]), inline(" \u2014 ".join(cells[1:]))]
        else:
            lines.append(inline(line.strip()))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    docs = Path(args[0] if args else "docs")
    sys.stdout.write(render(build_parser(), reference_pages(docs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
