"""Certificates and kubeconfigs for the local development cluster.

Every component and test user authenticates with a client certificate signed by one
cluster CA, so RBAC evaluates real usernames and groups. Keys are generated once per state
directory and reused by later starts, which keeps kubeconfigs handed out earlier valid.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate subject: the username (CN) and groups (O) that the API server authenticates."""

    username: str
    groups: tuple[str, ...] = ()
    file_stem: str = ""

    @property
    def stem(self) -> str:
        return self.file_stem or self.username.replace(":", "-")


@dataclass
class Pki:
    """Files of the cluster's public key infrastructure under one directory."""

    directory: Path
    generated: list[str] = field(default_factory=list)

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "service-account.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.directory / "service-account.pub"

    def cert(self, stem: str) -> Path:
        return self.directory / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.directory / f"{stem}.key"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _load_key(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def ensure_ca(pki: Pki) -> None:
    """Create the cluster CA and the ServiceAccount signing key if they do not exist."""
    pki.directory.mkdir(parents=True, exist_ok=True)
    if not pki.ca_cert.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aiml-local-cluster-ca")])
        cert = (
            _builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write_key(pki.ca_key, key)
        pki.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pki.generated.append("ca")

    if not pki.service_account_key.exists():
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(pki.service_account_key, sa_key)
        pki.service_account_public_key.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        pki.generated.append("service-account")


def ensure_serving_cert(pki: Pki, stem: str, common_name: str, dns_names: list[str], ips: list[str]) -> None:
    """Create a TLS serving certificate signed by the cluster CA unless it exists."""
    if pki.cert(stem).exists():
        return
    ca_key = _load_key(pki.ca_key)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(pki.key(stem), key)
    pki.cert(stem).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.generated.append(stem)


def ensure_client_cert(pki: Pki, identity: ClientIdentity) -> None:
    """Create a client certificate for a username and its groups unless it exists."""
    stem = identity.stem
    if pki.cert(stem).exists():
        return
    ca_key = _load_key(pki.ca_key)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, identity.username)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in identity.groups]
    cert = (
        _builder(x509.Name(attributes), ca_cert.subject, key.public_key())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(pki.key(stem), key)
    pki.cert(stem).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.generated.append(stem)


def write_kubeconfig(path: Path, server: str, pki: Pki, stem: str, user: str, context: str) -> None:
    """Write a kubeconfig with the CA and the client certificate embedded, so it works from any directory."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "aiml-local", "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(pki.cert(stem)), "client-key-data": b64(pki.key(stem))},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": "aiml-local", "user": user}}],
        "current-context": context,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
