"""one_machine_certificates.py: the CA, the SuperLink certificate and partner node certificates."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "deploy" / "one_machine_certificates.py"


def _generator():
    spec = importlib.util.spec_from_file_location("generate_certificates", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_partner_certificates_name_their_partner_for_mtls(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--partner", "careplus@psi.careplus.example,10.0.0.7"]
    subprocess.run([sys.executable, str(SCRIPT), *args, "--partner", "freshmart-north"], check=True)
    ca = _load(tmp_path / "ca.crt")
    careplus = _load(tmp_path / "partners" / "careplus.pem")
    careplus.verify_directly_issued_by(ca)
    san = careplus.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:loyalfed:partner:careplus"]
    assert san.get_values_for_type(x509.DNSName) == ["psi.careplus.example"]
    usages = careplus.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    north = _load(tmp_path / "partners" / "freshmart-north.pem")
    north_san = north.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(north_san) == [x509.UniformResourceIdentifier("urn:loyalfed:partner:freshmart-north")]
    for key in ("ca.key", "server.key", "partners/careplus.key", "partners/freshmart-north.key"):
        assert (tmp_path / key).stat().st_mode & 0o777 == 0o600
    # The SuperLink certificate is unchanged: a server certificate only, no partner identity.
    server = _load(tmp_path / "server.pem")
    assert not server.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.UniformResourceIdentifier)


def test_nodes_read_the_partner_the_script_certified(tmp_path: Path) -> None:
    from participant_node.matching.peer_identity import PARTNER_URI_PREFIX, partner_from_certificate

    assert _generator().PARTNER_URI_PREFIX == PARTNER_URI_PREFIX
    _generator().generate_certificates(tmp_path, ["127.0.0.1"], partners={"fuelgo": []}, days=1)
    assert partner_from_certificate((tmp_path / "partners" / "fuelgo.pem").read_text()) == "fuelgo"


def test_a_malformed_partner_is_a_usage_error(tmp_path: Path) -> None:
    args = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--partner", "fresh mart"]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 2 and "partner id 'fresh mart' must match" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "ca.key").exists()


@pytest.mark.parametrize("spec", ["fresh mart", "careplus:admin@host", "", "-x"])
def test_malformed_partner_ids_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="partner id"):
        _generator().parse_partner(spec)
