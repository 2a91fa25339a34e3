"""The documentation's own checks: every relative link and image in README.md and docs/*.md points at a file that
exists, every `#anchor` matches a heading (GitHub's slug rule), and every `pdfgc <command> --flag` in their code
blocks is a flag that command's parser knows. Parsers only: nothing is run, no torch is imported."""

from __future__ import annotations

import re
import shlex
import unicodedata
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `# comment` in a bash block is not a heading)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        out.append("" if fenced else line)
    return out


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    blocks, lang, body = [], None, []
    for line in text.splitlines():
        m = FENCE.match(line.strip())
        if m and lang is None:
            lang, body = line.strip()[3:].strip(), []
        elif m:
            blocks.append((lang, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation other than `-` and `_` removed, each
    space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFC", text).lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        s = slug(m.group(2))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def links(path: Path) -> list[str]:
    text = "\n".join(prose_lines(path.read_text(encoding="utf-8")))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return [m.group(1) for m in LINK.finditer(text)]


def test_links_and_images_exist():
    bad = []
    for doc in DOCS:
        for target in links(doc):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file, _, frag = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            if not dest.exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                bad.append(f"{doc.relative_to(ROOT)}: {target} (no heading with that anchor)")
    assert not bad, "\n".join(bad)


def test_docs_have_links():
    # the checks above see the README's links at all (a broken regular expression would pass them vacuously)
    found = links(ROOT / "README.md")
    assert any(t.endswith(".png") for t in found) and any(t.startswith("#") for t in found)
    assert any(t.startswith("docs/") for t in found)


def test_slug_rule():
    assert slug("Default model: mesh warp, fitted here") == "default-model-mesh-warp-fitted-here"
    assert slug("Web UI: `pdfgc ui`") == "web-ui-pdfgc-ui"
    assert slug("Lips from speech (Whisper base + a linear head)") == "lips-from-speech-whisper-base--a-linear-head"
    assert slug("The lite PD-FGC model (trained here, not shipped)") == "the-lite-pd-fgc-model-trained-here-not-shipped"


# --- the flags of `pdfgc <command>` lines in the README's code blocks -------------------------------------------


def command_lines(text: str) -> list[list[str]]:
    """Each `pdfgc <command> ...` (or `python -m pdfgc.cli <command> ...`) of the bash blocks, as words, comments
    and `...` placeholders dropped."""
    out = []
    for lang, body in code_blocks(text):
        if lang not in ("bash", "sh", "shell"):
            continue
        body = body.replace("\\\n", " ")
        for line in body.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words, part = list(lexer), []
            for w in [*words, ";"]:
                if w and set(w) <= set("();<>|&"):  # a command separator: one command ends
                    for i, x in enumerate(part):
                        if x == "pdfgc" or (x == "pdfgc.cli" and i and part[i - 1] == "-m"):
                            out.append([y for y in part[i + 1 :] if y != "..."])
                            break
                    part = []
                else:
                    part.append(w)
    return out


@cache
def flags_of(command: str) -> frozenset[str]:
    import argparse

    from pdfgc.cli import build_parser

    ap = build_parser(only=command)
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    return frozenset(s for a in parser._actions for s in a.option_strings)


def test_command_flags_exist():
    from pdfgc.cli import COMMANDS

    assert len(command_lines((ROOT / "README.md").read_text(encoding="utf-8"))) >= 20  # the commands were found
    lines = [words for doc in DOCS for words in command_lines(doc.read_text(encoding="utf-8"))]
    bad = []
    for words in lines:
        if not words:
            continue
        command = words[0]
        if command not in COMMANDS:
            bad.append(f"pdfgc {command}: no such command")
            continue
        known = flags_of(command)
        for w in words[1:]:
            flag = w.split("=", 1)[0]
            if flag.startswith("-") and not re.fullmatch(r"-\d.*", flag) and flag not in known:
                bad.append(f"pdfgc {command} {flag}: not a flag of `pdfgc {command}`")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_unfilled_placeholders(doc):
    # template markers left in a table (e.g. a verdict column never filled in)
    text = doc.read_text(encoding="utf-8")
    assert "_VERDICT" not in text


# --- the README's Python snippets: they parse, and what they import exists --------------------------------------


def module_names(module: str) -> set[str]:
    """The names a pdfgc module defines or imports at its top level (read from its source: nothing is imported)."""
    import ast

    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
                if isinstance(t, ast.Name) and t.id == "__all__" and node.value is not None:  # lazy exports
                    names.update(c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant))
    return names


def test_python_snippets_parse_and_import():
    import ast

    blocks = [body for lang, body in code_blocks((ROOT / "README.md").read_text(encoding="utf-8")) if lang == "python"]
    assert len(blocks) >= 3
    bad = []
    for body in blocks:
        tree = ast.parse(body)  # a snippet that does not parse fails here
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pdfgc":
                known = module_names(node.module)
                bad += [f"from {node.module} import {a.name}" for a in node.names if a.name not in known]
    assert not bad, "\n".join(bad)


def test_named_scripts_and_modules_exist():
    # `python benchmarks/x.py`, `scripts/...` and `python -m pdfgc.x` named anywhere in the docs
    bad = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for path in set(re.findall(r"(?<![\w/.])((?:benchmarks|scripts)/[A-Za-z0-9_]+\.(?:py|sh))", text)):
            if not (ROOT / path).is_file():
                bad.append(f"{doc.name}: {path}")
        for module in set(re.findall(r"python3? -m (pdfgc[\w.]*)", text)):
            base = ROOT / Path(*module.split("."))
            if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
                bad.append(f"{doc.name}: python -m {module}")
    assert not bad, "\n".join(bad)
