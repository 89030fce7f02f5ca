"""Real servers on loopback that receive alerts, for tests/test_alerts*.py (imported by name).

`Receiver` is one HTTP server with two endpoints shaped like what alerts go to: a Slack incoming webhook
(`/services/T0/B0/...`: a JSON body with `text` gets `200 ok`, anything else `400 invalid_payload`, as
Slack answers) and a generic webhook (`/hook`) that checks the HMAC-SHA256 signature the way the README
tells receivers to. `mode` makes it fail: `down` (500 to everything) or `slow` (answers after 3 s).
`Mailbox` is an SMTP server (aiosmtpd) that can require STARTTLS and a login.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SLACK_PATH = "/services/T000/B000/slack-url-secret-9f2c"
WEBHOOK_SECRET = "whsec-alert-signing-secret-51d0"


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_valid: bool | None = None  # webhook deliveries: whether the signature verified

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: float = 300) -> bool:
    """What a receiver does (README "Alerts"): recompute the HMAC over `<timestamp>.<body>`, compare in
    constant time, refuse a timestamp too far from now (a replay)."""
    timestamp = headers.get("x-revetl-timestamp", "")
    signature = headers.get("x-revetl-signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@dataclass
class Receiver:
    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    mode: str = "ok"  # ok | down | slow

    @property
    def slack_url(self) -> str:
        return self.url + SLACK_PATH

    @property
    def hook_url(self) -> str:
        return self.url + "/hook"

    def slack(self) -> list[dict[str, Any]]:
        return [d.json for d in self.deliveries if d.path == SLACK_PATH]

    def hooks(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == "/hook"]


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on a free loopback port, in a thread, recording every POST."""
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            delivery = Delivery(self.path, headers, body)
            state.deliveries.append(delivery)
            if state.mode == "slow":
                time.sleep(3)
            if state.mode == "down":
                return self._answer(500, "internal error")
            if self.path == SLACK_PATH:
                try:
                    ok = isinstance(json.loads(body).get("text"), str)
                except ValueError:
                    ok = False
                return self._answer(200, "ok") if ok else self._answer(400, "invalid_payload")
            if self.path == "/hook":
                delivery.signature_valid = verify(WEBHOOK_SECRET, headers, body)
                return self._answer(200, "{}") if delivery.signature_valid else self._answer(401, "bad signature")
            return self._answer(404, "no_service")

        def _answer(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)  # per message: whether it came over TLS


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files), valid for a day."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.contextmanager
def mailbox(login: tuple[str, str] | None = None, certificate: tuple[Path, Path] | None = None) -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on a free loopback port. With `certificate` it offers STARTTLS and
    requires it; with `login` it requires that username and password (AUTH PLAIN/LOGIN)."""
    import socket
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Mailbox("127.0.0.1", port)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's API
            box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            box.messages.append(message_from_bytes(envelope.original_content, policy=policy.default))
            box.tls.append(session.ssl is not None)
            return "250 Message accepted for delivery"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        user, password = data.login.decode(), data.password.decode()
        box.logins.append((user, password))
        return AuthResult(success=login is not None and (user, password) == login)

    options: dict[str, Any] = {"ready_timeout": 10}
    if certificate is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*map(str, certificate))
        options.update(tls_context=context, require_starttls=True)
    if login is not None:
        options.update(authenticator=authenticate, auth_required=True, auth_require_tls=certificate is not None)
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
