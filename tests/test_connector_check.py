"""Connector.check's default: a PATH that does not exist, a URL that does not answer, and a token
the server refuses are each one sentence; a good source has none (and no secret is in them)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from lithotse_desktop.connectors import ConfigField, Connector, FieldType

TOKEN = "right-token"


class Server(Connector):
    name = "check-test"
    fields = (ConfigField("base_url", FieldType.URL, "Server address", required=True),
              ConfigField("path", FieldType.PATH, "Folder"),
              ConfigField("token", FieldType.SECRET, "Token"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_response(401)
            self.end_headers()
            return
        self.send_response(404 if self.path != "/fhir" else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/fhir"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_good_source_has_no_problems(server, tmp_path):
    assert Server({"base_url": server, "path": str(tmp_path), "token": TOKEN}).check() == []


def test_each_problem_is_one_sentence_without_the_secret(server, tmp_path):
    problems = Server({"base_url": server, "path": str(tmp_path / "gone"), "token": "wrong-token"}).check()
    assert problems == [f"Server address: {server} did not accept the token (HTTP 401)",
                        f"Folder: {tmp_path / 'gone'} does not exist"]
    assert not any("wrong-token" in p for p in problems)
    assert Server({"base_url": server}).check() == [f"Server address: {server} asks for a token (HTTP 401)"]
    url = f"http://127.0.0.1:{closed_port()}/fhir"
    [silent] = Server({"base_url": url, "token": TOKEN}).check()
    assert silent.startswith(f"Server address: {url} does not answer (")
