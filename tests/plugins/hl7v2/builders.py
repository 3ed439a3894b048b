"""Small HL7 v2 message builders and a read helper shared by the hl7v2 tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from lithotse_desktop.connectors import RawObject
from lithotse_hl7v2 import Hl7v2Connector

STREAMS = ("messages", "adt", "oru")


def msh(control_id: str, message_type: str, when: str = "20240101120000") -> str:
    return f"MSH|^~\\&|APP|FAC|RCV|RFAC|{when}||{message_type}|{control_id}|P|2.5"


def adt(control_id: str, *, admit: str = "", event: str = "20240101100000",
        sent: str = "20240101120000", patient: str = "P1", birth: str = "19700101") -> str:
    """An ADT^A01 with EVN, PID and PV1; segments joined by CR."""
    pv1 = ["PV1", "1", "I", "WARD^101^A", "", "", "", "D1^House^Greg"] + [""] * 11 + ["V9"]
    pv1 += [""] * 24 + [admit, ""]
    return "\r".join([
        msh(control_id, "ADT^A01^ADT_A01", sent),
        f"EVN|A01|{event}",
        f"PID|1||{patient}^^^HOSP^MR||DOE^JANE||{birth}|F",
        "|".join(pv1),
    ])


def oru(control_id: str, results: list[tuple[str, str]], *, obr_when: str = "20240101080000",
        sent: str = "20240101120000", patient: str = "P1") -> str:
    """An ORU^R01 with one OBR and an NM OBX per ``(value, OBX-14)`` pair."""
    segments = [msh(control_id, "ORU^R01", sent), f"PID|1||{patient}",
                f"OBR|1|||GLU^Glucose|||{obr_when}"]
    for n, (value, when) in enumerate(results, 1):
        segments.append(f"OBX|{n}|NM|2345-7^Glucose^LN||{value}|mmol/L|3.9-6.1|N|||F|||{when}")
    return "\r".join(segments)


def read_table(path: Path, stream: str, name: str | None = None) -> pa.Table:
    """Everything ``read`` yields for one stream of a file, as one table."""
    connector = Hl7v2Connector({"path": str(path.parent), "pattern": ""})
    obj = RawObject(Path(path), stream, name or path.name, "x-application/hl7-v2+er7", {})
    batches = list(connector.read(obj))
    return pa.Table.from_batches(batches, schema=batches[0].schema)


def read_rows(path: Path, stream: str, name: str | None = None) -> list[dict]:
    return read_table(path, stream, name).to_pylist()
