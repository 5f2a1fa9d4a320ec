"""deploy/local_ca.py, run as the targets run it: the CA made once and kept, server certificates for the
site's names that a client trusting the CA accepts, kept while still good, and clear refusals."""

from __future__ import annotations

import datetime
import ipaddress
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

REPO = Path(__file__).resolve().parents[2]
LOCAL_CA = [sys.executable, str(REPO / "deploy" / "local_ca.py")]


def issue(ca_dir: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LOCAL_CA, "issue", "--ca-dir", str(ca_dir), "--out", str(out), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_issue_makes_a_ca_and_a_certificate_for_the_default_server_names(tmp_path):
    """Tests that the first issue makes the CA (key 0600) and an ECDSA P-256 server certificate for
    deploy/defaults.yml's nginx_server_names, signed by it, within Mozilla intermediate's 366 days."""
    result = issue(tmp_path / "ca", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "issued"
    ca, cert = certificate(tmp_path / "ca" / "ca.pem"), certificate(tmp_path / "site" / "cert.pem")
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=366)
    for key in (tmp_path / "ca" / "ca-key.pem", tmp_path / "site" / "key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_issue_again_keeps_a_certificate_that_is_still_good(tmp_path):
    """Tests that a second issue for the same names prints "kept" and leaves both files as they were."""
    assert issue(tmp_path / "ca", tmp_path / "site").returncode == 0
    before = [(tmp_path / "site" / name).read_bytes() for name in ("cert.pem", "key.pem")]
    result = issue(tmp_path / "ca", tmp_path / "site")
    assert result.stdout.strip() == "kept"
    assert [(tmp_path / "site" / name).read_bytes() for name in ("cert.pem", "key.pem")] == before


def test_issue_for_other_names_makes_a_new_certificate_from_the_same_ca(tmp_path):
    """Tests that --name (as Ansible passes the inventory's names) replaces the certificate, and the CA
    that clients already trust stays the same."""
    assert issue(tmp_path / "ca", tmp_path / "site").returncode == 0
    ca_before = (tmp_path / "ca" / "ca.pem").read_bytes()
    result = issue(tmp_path / "ca", tmp_path / "site", "--name", "board.test", "--name", "::1")
    assert result.stdout.strip() == "issued", result.stderr
    assert (tmp_path / "ca" / "ca.pem").read_bytes() == ca_before
    san = certificate(tmp_path / "site" / "cert.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert {str(name.value) for name in san.value} == {"board.test", "::1"}


def test_key_mode_option_sets_the_key_files_mode(tmp_path):
    """Tests that --key-mode 0644 (the compose mount, inside a 0700 directory) is the key's mode."""
    assert issue(tmp_path / "ca", tmp_path / "site", "--key-mode", "0644").returncode == 0
    assert stat.S_IMODE((tmp_path / "site" / "key.pem").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "site").stat().st_mode) == 0o700


def test_a_name_that_is_neither_a_dns_name_nor_an_ip_address_is_refused_naming_it(tmp_path):
    """Tests that a wildcard or URL as a name stops the tool with exit 2 and the name in its message."""
    result = issue(tmp_path / "ca", tmp_path / "site", "--name", "https://board.test/")
    assert result.returncode == 2
    assert "'https://board.test/' is neither an IP address nor a DNS name" in result.stderr
    assert not (tmp_path / "site" / "cert.pem").exists()


def test_issues_run_at_once_make_one_ca_and_matching_keys_and_certificates(tmp_path):
    """Tests that stacks brought up together (four issues at once, two per output directory) end with
    one CA that signed every certificate, each one matching its key."""
    outs = [tmp_path / "a", tmp_path / "a", tmp_path / "b", tmp_path / "b"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda out: issue(tmp_path / "ca", out), outs))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    ca = certificate(tmp_path / "ca" / "ca.pem")
    for out in {tmp_path / "a", tmp_path / "b"}:
        cert = certificate(out / "cert.pem")
        cert.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key((out / "key.pem").read_bytes(), password=None)
        assert key.public_key() == cert.public_key()
