"""Reading the shell examples of a Markdown file, and expanding their documented syntax.

A fenced block whose info string is ``sh`` (or ``bash``, ``shell``) holds shell lines; a line
ending in a backslash continues on the next. A ``#`` after whitespace and outside quotes starts
a comment. The syntax expanded into concrete commands:

* ``[--json]`` — an optional part (which may hold several words): without it, then with it;
* ``push|pull|status`` — alternatives inside one word;
* ``NAME | --all`` — alternatives between the word before and the word after a lone ``|``;
* ``< file`` — standard input read from a file (kept apart from the arguments).
"""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
SHELL_LANGUAGES = {"sh", "bash", "shell"}


@dataclass(frozen=True)
class ShellLine:
    path: Path
    lineno: int
    text: str
    comment: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.lineno}"


@dataclass
class Command:
    """One concrete command: its words and the file its standard input comes from."""

    words: list[str]
    stdin: str | None = None
    notes: list[str] = field(default_factory=list)


def _split_comment(text: str) -> tuple[str, str]:
    quote = None
    for pos, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (pos == 0 or text[pos - 1].isspace()):
            return text[:pos].rstrip(), text[pos + 1:].strip()
    return text.rstrip(), ""


def shell_lines(markdown: Path) -> list[ShellLine]:
    """Every non-empty shell line of the file's shell blocks, in order."""
    out: list[ShellLine] = []
    lines = markdown.read_text("utf-8").splitlines()
    inside, shell, fence, pending, start = False, False, "", "", 0
    for number, raw in enumerate(lines, 1):
        match = FENCE.match(raw)
        if not inside and match:
            inside, fence = True, match.group(2)
            shell = match.group(3).lower() in SHELL_LANGUAGES
            continue
        if inside and raw.strip().startswith(fence[:3]) and raw.strip().strip(fence[0]) == "":
            inside = False
            continue
        if not inside or not shell:
            continue
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        text, comment = _split_comment(pending + raw)
        pending = ""
        if text.strip():
            out.append(ShellLine(markdown, start, text.strip(), comment))
    return out


# --- expansion of the documented syntax ------------------------------------------------
def _words(text: str) -> list[str]:
    """shlex words, with leading '[' and trailing ']' as words of their own."""
    out: list[str] = []
    for word in shlex.split(text):
        opening = len(word) - len(word.lstrip("["))
        closing = len(word) - len(word.rstrip("]"))
        core = word[opening:len(word) - closing] if closing else word[opening:]
        out += ["["] * opening + ([core] if core else []) + ["]"] * closing
    return out


def _parse(words: list[str], pos: int, closing: bool) -> tuple[list, int]:
    items: list = []
    while pos < len(words):
        word = words[pos]
        if word == "[":
            inner, pos = _parse(words, pos + 1, True)
            items.append(("opt", inner))
            continue
        if word == "]":
            if not closing:
                raise ValueError(f"unbalanced ']' in {' '.join(words)!r}")
            return items, pos + 1
        if word == "|":
            if not items or pos + 1 >= len(words):
                raise ValueError(f"'|' needs a word on each side in {' '.join(words)!r}")
            following, pos = _parse_one(words, pos + 1)
            items.append(("alt", [items.pop(), following]))
            continue
        if "|" in word and "://" not in word:
            items.append(("alt", [("word", w) for w in word.split("|")]))
        else:
            items.append(("word", word))
        pos += 1
    if closing:
        raise ValueError(f"unbalanced '[' in {' '.join(words)!r}")
    return items, pos


def _parse_one(words: list[str], pos: int) -> tuple[tuple, int]:
    if words[pos] == "[":
        inner, end = _parse(words, pos + 1, True)
        return ("opt", inner), end
    return ("word", words[pos]), pos + 1


def _expand(item: tuple) -> list[list[str]]:
    kind, value = item
    if kind == "word":
        return [[value]]
    if kind == "opt":
        return [[]] + _expand_all(value)
    return [words for option in value for words in _expand(option)]


def _expand_all(items: list) -> list[list[str]]:
    out = []
    for combination in itertools.product(*(_expand(i) for i in items)):
        out.append([w for part in combination for w in part])
    return out


def expand(text: str) -> list[Command]:
    """The concrete commands a documented line stands for, the shortest form first."""
    commands = []
    for words in _expand_all(_parse(_words(text), 0, False)[0]):
        stdin = None
        if "<" in words:
            at = words.index("<")
            stdin = words[at + 1]
            words = words[:at] + words[at + 2:]
        commands.append(Command(words, stdin))
    return commands


def code_blocks(markdown: Path, language: str) -> list[str]:
    """The text of every fenced block with this info string, in order."""
    blocks, current, inside, fence = [], [], False, ""
    for raw in markdown.read_text("utf-8").splitlines():
        match = FENCE.match(raw)
        if not inside and match:
            inside, fence, current = True, match.group(2), []
            wanted = match.group(3).lower() == language
            continue
        if inside and raw.strip().startswith(fence[:3]) and raw.strip().strip(fence[0]) == "":
            inside = False
            if wanted:
                blocks.append("\n".join(current))
            continue
        if inside:
            current.append(raw)
    return blocks
