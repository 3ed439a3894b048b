"""The README harness reads shell blocks and expands the documented syntax; unknown commands fail it."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from tests.docs import readme_runner as harness
from tests.docs.shell_doc import code_blocks, expand, shell_lines

DOC = '''# Title

```sh
lithotse sync push|pull [--remote s3://b/p] [--json]   # a comment
bash scripts/demo.sh
curl -H "Authorization: Bearer $(lithotse token)" \\
  "http://127.0.0.1:8765/x?a=1 #frag"
```

```toml
lithotse not = "a shell line"
```

```
lithotse not-shell-either
```

```sh
lithotse derive build NAME | --all [--full]
lithotse source add x --set token=-  < token.txt
lithotse derive show v [--from … --to …]
```
'''


def test_shell_lines_come_from_shell_blocks_only(tmp_path: Path):
    doc = tmp_path / "DOC.md"
    doc.write_text(DOC)
    lines = shell_lines(doc)
    assert [line.text.split()[0] + " " + line.text.split()[1] for line in lines] == [
        "lithotse sync", "bash scripts/demo.sh", "curl -H", "lithotse derive", "lithotse source", "lithotse derive"]
    assert lines[0].comment == "a comment" and lines[0].where == "DOC.md:4"
    assert lines[2].text.endswith("\"http://127.0.0.1:8765/x?a=1 #frag\""), "a # inside quotes is no comment"
    assert code_blocks(doc, "toml") == ['lithotse not = "a shell line"']


def test_documented_syntax_expands_shortest_first():
    assert [c.words[1:] for c in expand("lithotse sync push|pull [--remote s3://b/p] [--json]")] == [
        ["sync", "push"], ["sync", "push", "--json"], ["sync", "push", "--remote", "s3://b/p"],
        ["sync", "push", "--remote", "s3://b/p", "--json"], ["sync", "pull"], ["sync", "pull", "--json"],
        ["sync", "pull", "--remote", "s3://b/p"], ["sync", "pull", "--remote", "s3://b/p", "--json"]]
    assert [c.words[2:] for c in expand("lithotse derive build NAME | --all [--full]")] == [
        ["build", "NAME"], ["build", "NAME", "--full"], ["build", "--all"], ["build", "--all", "--full"]]
    [command] = expand("lithotse source add x --set token=-  < token.txt")
    assert command.words[-1] == "token=-" and command.stdin == "token.txt"
    assert [c.words[3:] for c in expand("lithotse derive show v [--from … --to …]")] == [
        ["v"], ["v", "--from", "…", "--to", "…"]]
    with pytest.raises(ValueError, match="unbalanced"):
        expand("lithotse raw ls [--json")


@pytest.fixture
def bare_session(tmp_path, monkeypatch):
    """A session without servers: enough for commands that fail before reaching one."""
    fhir = types.SimpleNamespace(base_url="http://127.0.0.1:1/fhir")
    return harness.Session(tmp_path, monkeypatch, seaweed=None, fhir=fhir, port=1, remote="s3://x/y")


def test_a_command_the_harness_cannot_run_fails_it(tmp_path, bare_session):
    doc = tmp_path / "NEW.md"
    doc.write_text("```sh\nlithotse frobnicate --now\n```\n")
    with pytest.raises(AssertionError, match="documents `lithotse frobnicate`, which tests/docs/readme_runner.py "
                                             "does not know how to run"):
        harness.run_lines(bare_session, shell_lines(doc))


def test_an_example_value_without_a_fixture_fails_it(tmp_path, bare_session):
    doc = tmp_path / "NEW.md"
    doc.write_text("```sh\nlithotse source streams SOURCE\n```\n")
    with pytest.raises(AssertionError, match=r"no fixture for \['SOURCE'\]"):
        harness.run_lines(bare_session, shell_lines(doc))


def test_an_option_that_no_longer_exists_fails_it(tmp_path, bare_session):
    doc = tmp_path / "NEW.md"
    doc.write_text("```sh\nlithotse plugins list --jsonl\n```\n")
    with pytest.raises(AssertionError, match="(?s)exited 2:.*No such option '--jsonl'"):
        harness.run_lines(bare_session, shell_lines(doc))
