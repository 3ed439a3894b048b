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
