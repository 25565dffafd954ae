"""A throwaway test PKI for C2PA signing: a root CA and an ECDSA P-256 end-entity signing certificate with the
extensions C2PA requires of a signer (digitalSignature key usage, an email-protection EKU, not a CA).

``make_test_signing(directory)`` is plain so integration tests elsewhere can build one too; the ``c2pa_identity``
fixture gives one per test session.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from microdrama_assets.trust.provenance import SigningIdentity

_USAGES = {"content_commitment": False, "key_encipherment": False, "data_encipherment": False,
           "key_agreement": False, "encipher_only": False, "decipher_only": False}


@dataclass(frozen=True)
class ThrowawaySigning:
    identity: SigningIdentity
    root_pem: str  # the trust anchor that makes the identity's signatures Trusted


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "microdrama tests")])


def make_test_signing(directory: Path, valid_days: int = 30) -> ThrowawaySigning:
    """Write a fresh root CA and a signing certificate and key (PEM) into ``directory``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=valid_days)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(_name("microdrama test root")).issuer_name(_name("microdrama test root"))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **_USAGES),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = (x509.CertificateBuilder().subject_name(_name("microdrama test signer")).issuer_name(root.subject)
              .public_key(signer_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(start).not_valid_after(end)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **_USAGES),
                             critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
              .sign(root_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    chain, key = directory / "signer-chain.pem", directory / "signer-key.pem"
    chain.write_bytes(signer.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(signer_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    root_pem = root.public_bytes(serialization.Encoding.PEM).decode()
    (directory / "root.pem").write_text(root_pem)
    return ThrowawaySigning(SigningIdentity(chain, key, "es256"), root_pem)


@pytest.fixture(scope="session")
def c2pa_identity(tmp_path_factory) -> ThrowawaySigning:
    return make_test_signing(tmp_path_factory.mktemp("c2pa-pki"))
