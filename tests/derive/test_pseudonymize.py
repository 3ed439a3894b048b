"""Patient keys leave L1 only as an HMAC under the workspace secret held in the secrets store."""

from __future__ import annotations

import hashlib
import hmac

from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.raw import run_import
from lithotse_desktop.secrets import load_secret, secret_ref


def test_kept_patient_key_is_an_hmac_never_the_raw_identifier(workspace, lines):
    (lines / "a.txt").write_text("2024-01-01,1,x,patient-001\n2024-01-02,2,y,patient-002\n")
    run_import(workspace, "vals")
    add_spec(workspace, {"name": "per_patient", "kind": "sql",
                         "inputs": {"v": {"source": "vals", "stream": "values"}},
                         "sql": "SELECT id AS patient_id, value FROM v ORDER BY value",
                         "pseudonymize": ["patient_id"]})
    build(workspace, "per_patient")
    rows = read_table(workspace, "per_patient")[1].to_pylist()
    secret = load_secret(secret_ref(workspace.id, "hmac-key"))
    assert secret and secret not in (workspace.root / "lithotse.toml").read_text()
    expected = [hmac.new(bytes.fromhex(secret), p.encode(), hashlib.sha256).hexdigest()
                for p in ("patient-001", "patient-002")]
    assert [r["patient_id"] for r in rows] == expected
    store = workspace.store("derived")
    for info in store.list("derived/per_patient/parts/"):
        assert b"patient-001" not in store.get_bytes(info.key)
    # the same secret gives the same pseudonym on the next build: keys stay joinable
    build(workspace, "per_patient", full=True)
    assert [r["patient_id"] for r in read_table(workspace, "per_patient")[1].to_pylist()] == expected


def test_views_hmac_patient_references_without_being_asked():
    from lithotse_desktop.derive.pseudonymize import patient_key_columns

    encounter = {"name": "e", "kind": "view", "input": {"source": "f", "stream": "Encounter"},
                 "view": {"resource": "Encounter", "select": [{"column": [
                     {"name": "id", "path": "getResourceKey()"},
                     {"name": "patient_id", "path": "subject.getReferenceKey(Patient)"},
                     {"name": "org", "path": "serviceProvider.getReferenceKey(Organization)"}]},
                     {"forEach": "participant", "column": [{"name": "who", "path": "individual.reference"}]}]}}
    assert patient_key_columns(encounter) == ["patient_id"]
    patient = {"name": "p", "kind": "view", "input": {"source": "f", "stream": "Patient"},
               "view": {"resource": "Patient", "select": [{"column": [
                   {"name": "pid", "path": "getResourceKey()"}, {"name": "gender", "path": "gender"}]}]},
               "pseudonymize": ["gender"]}
    assert patient_key_columns(patient) == ["gender", "pid"]


def test_a_lost_key_is_refused_rather_than_silently_replaced(workspace, lines, tmp_path, monkeypatch):
    """The OS keyring became unusable (or another secrets folder is in use): the key is absent there.
    A fresh key would give every patient a new pseudonym; the build refuses and publishes nothing."""
    import os

    import pytest

    from lithotse_desktop import secrets as secrets_module
    from lithotse_desktop.derive.catalog import Catalog
    from lithotse_desktop.errors import LithotseError
    from lithotse_desktop.secrets import store_secret

    (lines / "a.txt").write_text("2024-01-01,1,x,patient-001\n")
    run_import(workspace, "vals")
    add_spec(workspace, {"name": "per_patient", "kind": "sql",
                         "inputs": {"v": {"source": "vals", "stream": "values"}},
                         "sql": "SELECT id AS patient_id, value FROM v", "pseudonymize": ["patient_id"]})
    build(workspace, "per_patient")
    first = read_table(workspace, "per_patient")[1].to_pylist()
    published = Catalog(workspace).current("per_patient").to_json()
    original = os.environ["LITHOTSE_SECRETS_DIR"]

    def use_secrets_in(folder) -> None:
        monkeypatch.setenv("LITHOTSE_SECRETS_DIR", str(folder))
        secrets_module.reset()

    use_secrets_in(tmp_path / "empty-store")
    with pytest.raises(LithotseError, match=r"pseudonym key \(key id [0-9a-f]{16}\) is not in the secrets store"):
        build(workspace, "per_patient", full=True)
    assert Catalog(workspace).current("per_patient").to_json() == published
    store_secret(secret_ref(workspace.id, "hmac-key"), "ab" * 32)
    with pytest.raises(LithotseError, match="pseudonyms were made with key id"):
        build(workspace, "per_patient", full=True)

    use_secrets_in(original)
    build(workspace, "per_patient", full=True)
    assert read_table(workspace, "per_patient")[1].to_pylist() == first

    use_secrets_in(tmp_path / "another-empty-store")
    (workspace.root / ".lithotse" / "hmac-key.id").unlink()
    build(workspace, "per_patient", full=True)
    renamed = read_table(workspace, "per_patient")[1].to_pylist()
    assert renamed[0]["patient_id"] != first[0]["patient_id"]
