#!/usr/bin/env python3
"""A small local certificate authority for the staging stack and the test host (issue 12, item 1).

The CA lives in a directory on the control machine (`.tls/` at the repository root, git-ignored):
`ca.pem` (the certificate any client trusts: `SSL_CERT_FILE=.tls/ca.pem`) and `ca-key.pem` (mode
0600). It is made on first use and kept, so a browser or NSS database told to trust it once keeps
trusting every certificate issued later. `issue` writes a server certificate for the site's names
(nginx_server_names of deploy/defaults.yml and the --vars files; only the --name ones when --name
is given without --vars, as Ansible does with the inventory's names) into an output directory as `cert.pem` and
`key.pem`, and keeps an existing one that is still good: signed by this CA, for the same names, and
valid for more than RENEW_DAYS. It prints "issued" or "kept" (Ansible's changed_when reads it).

Keys are ECDSA P-256 signed with SHA-256, certificates valid VALID_DAYS (under the 366 days of
Mozilla's intermediate profile, server-side TLS guideline 5.7, which sslyze checks). Made with
pyca/cryptography; trustme was weighed and not taken: it makes throwaway test CAs in memory, while
this one must persist and be trusted by browsers across runs.

    python3 deploy/local_ca.py issue --ca-dir .tls --out .tls/compose --vars docker/deploy-vars.yml
    python3 deploy/local_ca.py issue --ca-dir .tls --out DIR --name test-host.local --key-mode 0644

Errors (an unreadable CA, a name that is neither a DNS name nor an IP address) exit 2 with the reason.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import importlib.util
import ipaddress
import os
import re
import socket
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
VALID_DAYS = 90
RENEW_DAYS = 30
_DNS_NAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")


class CaError(Exception):
    """A CA or certificate that cannot be made or read; the message says which and why."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Writes data to path with mode, atomically (a reader never sees half a key)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ensure_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA of ca_dir (ca.pem, ca-key.pem), made first when ca.pem does not exist; CaError when
    the files exist but cannot be read."""
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = ca_dir / "ca.pem", ca_dir / "ca-key.pem"
    if cert_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise CaError(
                f"{ca_dir}: the local CA cannot be read ({exc}); delete the directory to make a new one"
            ) from exc
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "channels-stack"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"channels-stack local CA ({socket.gethostname()})"),
    ])  # fmt: skip
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        # It signs server certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def parse_names(names: list[str]) -> list[x509.GeneralName]:
    """Subject alternative names for names: IP addresses as such, the rest as DNS names; CaError
    for anything else (a wildcard, a URL, an empty string)."""
    result: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if not _DNS_NAME.match(name):
            raise CaError(f"{name!r} is neither an IP address nor a DNS name")
        result.append(x509.DNSName(name))
    if not result:
        raise CaError("no names to issue a certificate for")
    return result


def _still_good(cert_path: Path, ca_cert: x509.Certificate, names: list[x509.GeneralName]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.InvalidSignature, x509.ExtensionNotFound):
        return False
    fresh = cert.not_valid_after_utc - _now() > datetime.timedelta(days=RENEW_DAYS)
    return fresh and set(san) == set(names)


def issue(ca_dir: Path, out: Path, names: list[str], key_mode: int = 0o600) -> bool:
    """Writes out/cert.pem and out/key.pem (key_mode) for names, signed by the CA of ca_dir; keeps
    a still-good pair. True when it issued a new one. Holds ca_dir/.lock meanwhile: stacks brought
    up at once must not make two CAs, nor write one key while another writes its certificate."""
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(ca_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _issue(ca_dir, out, names, key_mode)


def _issue(ca_dir: Path, out: Path, names: list[str], key_mode: int) -> bool:
    ca_cert, ca_key = ensure_ca(ca_dir)
    general_names = parse_names(names)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = out / "cert.pem", out / "key.pem"
    if key_path.exists() and _still_good(cert_path, ca_cert, general_names):
        os.chmod(key_path, key_mode)
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )  # digital_signature: ECDHE only, no key encipherment
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), key_mode)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return True


def server_names(var_files: list[Path]) -> list[str]:
    """nginx_server_names of deploy/defaults.yml overlaid by var_files (deploy/render.py's loader)."""
    spec = importlib.util.spec_from_file_location("deploy_render", Path(__file__).with_name("render.py"))
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    return list(render.load_vars(var_files)["nginx_server_names"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("issue", help="issue (or keep) a server certificate for the site's names")
    cmd.add_argument("--ca-dir", type=Path, required=True, help="the CA's directory (made on first use)")
    cmd.add_argument("--out", type=Path, required=True, help="directory for cert.pem and key.pem")
    cmd.add_argument("--vars", type=Path, action="append", default=[], help="deploy variables over defaults.yml")
    cmd.add_argument("--name", action="append", default=[], help="another DNS name or IP address")
    cmd.add_argument("--key-mode", default="0600", help="mode of key.pem (octal; default 0600)")
    args = parser.parse_args(argv)
    try:
        names = [*(server_names(args.vars) if args.vars or not args.name else []), *args.name]
        issued = issue(args.ca_dir, args.out, names, int(args.key_mode, 8))
    except Exception as exc:  # noqa: BLE001 (every failure is one line for the user)
        print(f"local_ca: {exc}", file=sys.stderr)
        return 2
    print("issued" if issued else "kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
