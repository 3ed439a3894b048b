"""Reading a tutorial page as steps to carry out: shell blocks, files, edits, expected output.

The paragraph right before a fenced block says what the block is:

* a ``sh`` block: commands, run in order with bash;
* ``Create `PATH`:`` (ending the paragraph): write the block as that file;
* ``In `PATH`, change`` then, for the next block, ``to``: replace the first block's text, which
  must occur exactly once, by the second's;
* ``` `PATH`, as `lithotse plugins new` writes it:``: the file must already hold exactly the block;
* ``… prints:`` / ``… print:``: the last lines the preceding shell block prints, ``…`` standing
  for any text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)\s*$")
CREATE = re.compile(r"[Cc]reate `([^`]+)`:$")
CHANGE = re.compile(r"[Ii]n `([^`]+)`,\s+change$")
GENERATED = re.compile(r"^`([^`]+)`, as `lithotse plugins new` writes it:$")
OUTPUT = re.compile(r"\bprints?:$")


@dataclass
class Step:
    kind: str  # "shell", "create", "replace", "generated", "output"
    text: str
    where: str
    path: str | None = None
    old: str | None = None


def _blocks(markdown: Path) -> list[tuple[str, str, str, int]]:
    """``(language, text, the paragraph before it, line)`` for every fenced block."""
    lines = markdown.read_text("utf-8").splitlines()
    out, paragraph, i = [], [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            if lines[i].strip():
                paragraph = paragraph + [lines[i].strip()] if i and lines[i - 1].strip() else [lines[i].strip()]
            i += 1
            continue
        fence, language, start = match.group(1), match.group(2).lower(), i + 1
        end = next(j for j in range(start, len(lines)) if lines[j].strip() == fence)
        text = "\n".join(lines[start:end]) + "\n" if end > start else ""
        out.append((language, text, " ".join(paragraph), start))
        paragraph, i = [], end + 1
    return out


def steps(markdown: Path) -> list[Step]:
    found: list[Step] = []
    pending_change: Step | None = None
    for language, text, before, line in _blocks(markdown):
        where = f"{markdown.name}:{line}"
        if pending_change is not None:
            assert before.strip() == "to", f"{where}: a change needs its 'to' block next"
            pending_change.text = text
            found.append(pending_change)
            pending_change = None
            continue
        if (match := CHANGE.search(before)) is not None:
            pending_change = Step("replace", "", where, path=match.group(1), old=text)
        elif (match := GENERATED.search(before)) is not None:
            found.append(Step("generated", text, where, path=match.group(1)))
        elif (match := CREATE.search(before)) is not None:
            found.append(Step("create", text, where, path=match.group(1)))
        elif language in ("sh", "bash", "shell"):
            found.append(Step("shell", text, where))
        elif OUTPUT.search(before):
            found.append(Step("output", text, where))
    assert pending_change is None, f"{markdown.name}: a change without its 'to' block"
    return found


def output_matches(expected: str, printed: str) -> bool:
    """The expected lines are the last printed lines; ``…`` is any text, runs of spaces are one."""
    def norm(line: str) -> str:
        return re.sub(r"\s+", " ", line.strip())

    want = [norm(line) for line in expected.splitlines() if line.strip()]
    got = [norm(line) for line in printed.splitlines() if line.strip()]
    if len(got) < len(want):
        return False
    patterns = [re.compile(".*".join(re.escape(part) for part in line.split("…")) + "$") for line in want]
    return all(p.match(line) for p, line in zip(patterns, got[len(got) - len(want):], strict=True))
