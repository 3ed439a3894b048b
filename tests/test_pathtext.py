"""Shown paths: ~ under the home folder, relative under the start folder, else as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from lithotse_desktop.pathtext import display_origin, display_path, display_paths, relative_to_cwd


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    home, start, elsewhere = (tmp_path / n for n in ("home", "start", "elsewhere"))
    for folder in (home, start, elsewhere):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(start)
    return home, start, elsewhere


def test_home_becomes_tilde_and_the_start_folder_relative(places):
    home, start, elsewhere = places
    assert display_path(home / "work" / "ws") == str(Path("~") / "work" / "ws")
    assert display_path(start / "demo-workspace") == "demo-workspace"
    assert display_path(start) == "."
    assert display_path(elsewhere / "x") == str(elsewhere / "x")
    assert display_path("already/relative") == "already/relative"


def test_a_start_folder_inside_home_still_shows_the_tilde_form(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "clone").mkdir()
    monkeypatch.chdir(tmp_path / "clone")
    assert display_path(tmp_path / "clone" / "demo-workspace") == str(Path("~") / "clone" / "demo-workspace")
    assert relative_to_cwd(tmp_path / "clone" / "demo-workspace") == "demo-workspace"
    assert relative_to_cwd(tmp_path / "other") is None


def test_a_root_home_or_start_folder_shortens_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/")
    monkeypatch.chdir("/")
    assert display_path(tmp_path / "x") == str(tmp_path / "x")


def test_paths_inside_json_data_keys_and_values(places):
    home, start, _ = places
    data = {"files": {str(start / "in" / "a.hl7"): {"size": 3}}, "url": "https://example.org/a",
            "names": [str(home / "b.csv"), "plain text"], "count": 2}
    assert display_paths(data) == {"files": {str(Path("in") / "a.hl7"): {"size": 3}},
                                   "url": "https://example.org/a",
                                   "names": [str(Path("~") / "b.csv"), "plain text"], "count": 2}


def test_plugin_origins_keep_their_kind_and_shorten_file_urls(places):
    _, start, elsewhere = places
    url = (start / "plugins" / "lithotse-csv").as_uri()
    assert display_origin(f"editable {url}") == f"editable {Path('plugins') / 'lithotse-csv'}"
    assert display_origin(url) == str(Path("plugins") / "lithotse-csv")
    outside = (elsewhere / "lithotse_foo-1.0-py3-none-any.whl").as_uri()
    assert display_origin(outside) == outside
    assert display_origin("index") == "index"
    assert display_origin("https://files.example.org/x.whl") == "https://files.example.org/x.whl"
