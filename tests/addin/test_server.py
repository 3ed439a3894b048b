"""The service side of the Office add-in: HTTPS with the local CA, CORS, format=text, change
notifications, the manifest and trust-cert."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import requests

from lithotse_desktop.excel.officejs import all_steps, manifest_xml, trust_ca
from lithotse_desktop.serve.tls import ensure_certificates
from tests.addin.conftest import ADDIN, csv_rows, derive_show, write_csv


def test_https_with_the_local_ca_cors_and_text_values(https_serve, addin_workspace):
    base, ca = https_serve["base"], str(https_serve["ca"])
    auth = {"Authorization": f"Bearer {https_serve['token']}"}
    # the certificate verifies against the CA for localhost (requests checks the name too)
    page = requests.get(f"{base}/addin/taskpane.html", verify=ca)
    assert page.status_code == 200 and "taskpane.js" in page.text and page.headers["cache-control"] == "no-cache"
    assert requests.get(f"{base}/api/v1/derivatives", verify=ca).status_code == 401
    # CORS: the add-in's own origin only
    url = f"{base}/api/v1/values"
    ok = requests.options(url, verify=ca, headers={"Origin": base, "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "authorization,content-type"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == base
    other = requests.options(url, verify=ca, headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": "POST"})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    simple = requests.get(f"{base}/api/v1/derivatives", verify=ca, headers={**auth, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
    # format=text: the bare number, suppressed, and errors as text with their status
    show = derive_show(addin_workspace)
    want = sum(r["n"] for r in show["rows"] if r["grp"] == "a")
    value = f"http://127.0.0.1:{https_serve['port']}/api/v1/derivatives/visits/value"
    text = requests.get(value, params={"measure": "n", "grp": "a", "format": "text", "token": https_serve["token"]})
    assert text.status_code == 200 and text.text == str(want) and text.headers["content-type"].startswith("text/plain")
    hidden = requests.get(value, params={"measure": "n", "grp": "c", "format": "text"}, headers=auth)
    assert hidden.text == "suppressed"
    missing = requests.get(value.replace("visits", "nope"), params={"measure": "n", "format": "text"}, headers=auth)
    assert missing.status_code == 404 and missing.text.startswith("error: no derivative named 'nope'")
    assert requests.get(value, params={"measure": "n", "format": "text"}).text.startswith("error: missing or wrong")


def test_events_announce_a_version_built_by_another_process(https_serve, addin_workspace):
    url = f"http://127.0.0.1:{https_serve['port']}/api/v1/events"
    assert requests.get(url, timeout=5).status_code == 401
    with requests.get(url, headers={"Authorization": f"Bearer {https_serve['token']}"}, stream=True,
                      timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines(decode_unicode=True)

        def next_versions() -> dict:
            for line in lines:
                if line.startswith("data:"):
                    return json.loads(line[5:])["versions"]
            raise AssertionError("the stream ended")

        first = next_versions()
        assert first == {"visits": derive_show(addin_workspace)["version"]}
        write_csv(addin_workspace.csv_folder, csv_rows() + csv_rows(start_id=5000, months=(4,)))
        subprocess.run([sys.executable, "-m", "lithotse_desktop", "import", "ehr"], check=True, timeout=120,
                       env={**os.environ, "LITHOTSE_WORKSPACE": str(addin_workspace.root)}, capture_output=True)
        second = next_versions()
        assert second == {"visits": derive_show(addin_workspace)["version"]} and second != first


def test_ca_and_keys_stay_private(tmp_path):
    certs = ensure_certificates(tmp_path / "cfg" / "tls")
    assert stat.S_IMODE(os.stat(certs.folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(certs.folder / "lithotse-ca.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(certs.server_key).st_mode) == 0o600
    before = certs.server_cert.read_bytes()
    assert ensure_certificates(certs.folder).server_cert.read_bytes() == before  # kept while valid
    os.chmod(certs.server_key, 0o644)
    try:
        ensure_certificates(certs.folder)
    except Exception as exc:
        assert "chmod 600" in str(exc)
    else:
        raise AssertionError("a key others can read was accepted")


def test_manifest_points_at_the_https_port(workspace):
    workspace.config.setdefault("serve", {})["https_port"] = 9443
    workspace.save()
    out = workspace.root / "manifest.xml"
    proc = subprocess.run([sys.executable, "-m", "lithotse_desktop", "excel", "addin-manifest", "-o", str(out)],
                          env={**os.environ, "LITHOTSE_WORKSPACE": str(workspace.root)}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == manifest_xml(9443)
    root = ET.fromstring(out.read_bytes())
    ns = {"o": "http://schemas.microsoft.com/office/appforoffice/1.1",
          "v": "http://schemas.microsoft.com/office/taskpaneappversionoverrides",
          "bt": "http://schemas.microsoft.com/office/officeappbasictypes/1.0"}
    assert root.find("o:DefaultSettings/o:SourceLocation", ns).get("DefaultValue") == \
        "https://localhost:9443/addin/taskpane.html"
    urls = {u.get("id"): u.get("DefaultValue") for u in root.iter(f"{{{ns['bt']}}}Url")}
    assert urls["Functions.Metadata.Url"] == "https://localhost:9443/addin/functions.json"
    strings = {s.get("id"): s.get("DefaultValue") for s in root.iter(f"{{{ns['bt']}}}String")}
    assert strings["Functions.Namespace"] == "LITHOTSE"
    static = Path(__file__).resolve().parents[2] / "lithotse_desktop" / "serve" / "static" / "addin"
    for url in urls.values():
        assert (static / url.split("/addin/")[1]).is_file(), url
    for image in root.iter(f"{{{ns['bt']}}}Image"):
        if image.get("DefaultValue"):
            assert (static / image.get("DefaultValue").split("/addin/")[1]).is_file()


def test_manifest_passes_microsofts_offline_checks(workspace, node_modules, tmp_path):
    """The written manifest goes through Office's own parser and the unified manifest schema; a
    broken one (a misspelt element, a missing Id) is refused with the reason."""
    good = workspace.root / "manifest.xml"
    subprocess.run([sys.executable, "-m", "lithotse_desktop", "excel", "addin-manifest", "-o", str(good)],
                   env={**os.environ, "LITHOTSE_WORKSPACE": str(workspace.root)}, check=True, timeout=60)

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["node", "manifest-check.mjs", str(path)], cwd=ADDIN, capture_output=True,
                              text=True, timeout=120)

    ok = check(good)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("valid"), ok.stderr
    text = good.read_text()
    misspelt = tmp_path / "misspelt.xml"
    misspelt.write_text(text.replace("<Hosts>", "<Hostz>", 1).replace("</Hosts>", "</Hostz>", 1))
    refused = check(misspelt)
    assert refused.returncode == 1 and "requirements/scopes" in refused.stderr
    no_id = tmp_path / "no-id.xml"
    start, end = text.index("<Id>"), text.index("</Id>") + len("</Id>")
    no_id.write_text(text[:start] + text[end:])
    refused = check(no_id)
    assert refused.returncode == 1 and "manifest parser refused it" in refused.stderr


def test_trust_cert_steps_for_every_system(tmp_path):
    ca = Path("/x/lithotse-ca.pem")
    steps = all_steps(ca)
    assert steps["Windows"][0].startswith('certutil -user -addstore Root "/x/lithotse-ca.pem"')
    assert steps["macOS"][0].startswith("security add-trusted-cert -r trustRoot -k "
                                        '~/Library/Keychains/login.keychain-db "/x/lithotse-ca.pem"')
    assert 'certutil -d sql:$HOME/.pki/nssdb -A -t "C,,"' in steps["Linux browsers"][0]
    report = trust_ca(8766, install=False, home=tmp_path)
    assert report.done == [] and set(report.steps) == {"Windows", "macOS", "Linux browsers"}
    assert len(report.fingerprint.split(":")) == 32


def test_trust_cert_installs_into_the_nss_database(tmp_path):
    report = trust_ca(8766, platform="linux", home=tmp_path)
    db = tmp_path / ".pki" / "nssdb"
    assert report.failed == [] and report.done == [f"trusted for websites in the NSS database {db}"]
    listed = subprocess.run(["certutil", "-d", f"sql:{db}", "-L"], capture_output=True, text=True, check=True)
    assert report.name in listed.stdout and "C,," in listed.stdout
