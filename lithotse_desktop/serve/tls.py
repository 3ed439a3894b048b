"""The local CA and the ``localhost`` certificate that ``lithotse serve --https`` presents.

Office add-ins load only over HTTPS, and Excel on Mac refuses plain ``http://localhost``, so
the server needs a certificate that the user's machine trusts for ``localhost``. Lithotse
makes its own certificate authority once per user, with the ``cryptography`` library, and
issues the server's certificate from it; ``lithotse excel trust-cert`` asks the OS (or the
browsers' certificate database) to trust the CA.

Everything lives in ``tls/`` under the user config folder (the folder of the secrets file:
``LITHOTSE_SECRETS_DIR`` or ``platformdirs.user_config_dir("lithotse")``), created 0700:

* ``lithotse-ca.pem``  the CA certificate (public: this is what gets trusted);
* ``lithotse-ca.key``  the CA's private key, 0600, never copied anywhere else;
* ``localhost.pem``    the server certificate followed by the CA certificate;
* ``localhost.key``    the server's private key, 0600.

The CA carries name constraints (DNS ``localhost``, IP 127.0.0.1 and ::1 only), so even a
stolen CA key cannot mint a certificate another site would accept. The server certificate
lasts 800 days (macOS rejects TLS certificates valid for more than 825) and is renewed on
start when fewer than 30 days are left, or when it was not issued by the current CA.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..secrets import check_private_file, ensure_private_folder, private_lock, secrets_dir

CA_CERT = "lithotse-ca.pem"
CA_KEY = "lithotse-ca.key"
SERVER_CERT = "localhost.pem"
SERVER_KEY = "localhost.key"
LOCK = "tls.lock"
CA_DAYS = 3650
SERVER_DAYS = 800
RENEW_DAYS = 30
HOSTNAMES = ("localhost",)
ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Certificates:
    """Where the files are; ``server_cert`` holds the chain (server, then CA)."""

    folder: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path


def tls_dir() -> Path:
    return secrets_dir() / "tls"


def _paths(folder: Path) -> Certificates:
    return Certificates(folder, folder / CA_CERT, folder / SERVER_CERT, folder / SERVER_KEY)


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Replace ``path`` whole (temp file in the same folder, fsync, rename); 0600 when private."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        if not private:
            os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_private(path: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        check_private_file(os.fstat(handle.fileno()), path)
        return handle.read()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _owner() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a bare container): the host still names it
        user = "user"
    return f"{user}@{socket.gethostname()}"[:40]


def _new_ca(folder: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lithotse"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"Lithotse local CA ({_owner()})")])
    now = _now()
    permitted = [x509.DNSName(h) for h in HOSTNAMES] + [
        x509.IPAddress(ipaddress.ip_network(a)) for a in ADDRESSES]
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(folder / CA_KEY, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()), private=True)
    _write(folder / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), private=False)


def _server_needs_renewal(paths: Certificates, ca_pem: bytes) -> bool:
    from cryptography import x509

    if not paths.server_cert.exists() or not paths.server_key.exists():
        return True
    try:
        chain = x509.load_pem_x509_certificates(paths.server_cert.read_bytes())
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return True
    leaf = chain[0]
    if leaf.issuer != ca.subject or len(chain) < 2 or chain[1] != ca:
        return True
    try:
        leaf.verify_directly_issued_by(ca)
    except Exception:  # any signature or type mismatch: issue a new one
        return True
    return leaf.not_valid_after_utc - _now() < dt.timedelta(days=RENEW_DAYS)


def _new_server_cert(paths: Certificates, ca_pem: bytes, ca_key_pem: bytes) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{paths.folder / CA_KEY}: not the Lithotse CA's key; move the tls folder aside "
                          "to make a new CA (then run lithotse excel trust-cert again)")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    alt_names: list[x509.GeneralName] = [x509.DNSName(h) for h in HOSTNAMES]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ADDRESSES]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(paths.server_key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), private=True)
    _write(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM) + ca_pem, private=False)


def ensure_certificates(folder: Path | None = None) -> Certificates:
    """The CA and a current ``localhost`` certificate, created or renewed as needed (under a lock,
    so two servers starting at once make one CA)."""
    folder = Path(folder) if folder is not None else tls_dir()
    ensure_private_folder(folder.parent)
    ensure_private_folder(folder)
    paths = _paths(folder)
    with private_lock(folder / LOCK):
        if not (folder / CA_KEY).exists() or not paths.ca_cert.exists():
            _new_ca(folder)
        ca_key_pem = _read_private(folder / CA_KEY)
        ca_pem = paths.ca_cert.read_bytes()
        if _server_needs_renewal(paths, ca_pem):
            _new_server_cert(paths, ca_pem, ca_key_pem)
        _read_private(paths.server_key)
    return paths


def ca_fingerprint(ca_cert: Path) -> str:
    """SHA-256 fingerprint of the CA certificate, as the OS certificate dialogs show it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(ca_cert.read_bytes()).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def ca_common_name(ca_cert: Path) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
