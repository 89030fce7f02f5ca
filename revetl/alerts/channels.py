"""The messages an alert becomes, and sending them: Slack, a signed JSON webhook, email over SMTP.

Every message is made from one payload (`Alert.payload`), scrubbed of every secret known here (the sync
destination's, the channels', the values of secret-looking environment variables, URL passwords)
before any channel sees it. Sending raises `ChannelError` with one sentence (never the Slack URL or a
secret); notify.py turns it into one warning.

The webhook's body is the payload as JSON (UTF-8). It is signed with HMAC-SHA256 under the channel's
`secret`: `X-Revetl-Signature: sha256=<hex of HMAC(secret, "<X-Revetl-Timestamp>." + body)>`, the
timestamp in Unix seconds, so that a receiver can refuse a replayed body (README "Alerts": verifying).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from revetl.alerts.rules import Observation
from revetl.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from revetl.alerts.settings import Channel, EmailChannel, SlackChannel, WebhookChannel
from revetl.errors import scrub

__all__ = ["Alert", "ChannelError", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "environment_secrets", "send", "sign"]

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|WEBHOOK", re.I)
_REASON_LIMIT = 2_000  # characters of a reason in a message (Slack's section text holds 3,000)


class ChannelError(Exception):
    """An alert could not be delivered to one channel; the message is one sentence without secrets."""


@dataclass(frozen=True)
class Alert:
    """A change of state to tell: `observation` now failing (`failing`) or recovered, since when."""

    observation: Observation
    failing: bool
    since: dt.datetime  # when the failing state began (also in a recovery: how long it lasted)
    at: dt.datetime
    project: str

    def payload(self, secrets: Iterable[str] = ()) -> dict[str, Any]:
        """The alert as JSON data (the webhook's body; every message is made from it), secrets scrubbed."""
        seen = self.observation
        reason = seen.reason if seen.reason is None or len(seen.reason) <= _REASON_LIMIT else (
            seen.reason[:_REASON_LIMIT] + "...")
        data = {
            "version": 1,
            "state": "failing" if self.failing else "recovered",
            "rule": seen.rule.id,
            "kind": seen.rule.when,
            "subject": seen.subject,
            "summary": seen.summary,
            "reason": reason,
            "run_id": seen.run_id,
            **seen.facts,
            "since": self.since.isoformat(timespec="seconds"),
            "at": self.at.isoformat(timespec="seconds"),
            "project": self.project,
        }
        return _scrubbed(data, sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True))


def _scrubbed(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {key: _scrubbed(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, secrets) for item in value]
    return value


def environment_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (…_KEY, …_TOKEN, …PASSWORD, …): scrubbed
    from every alert, whatever put them in a message."""
    env = os.environ if environ is None else environ
    return [value for name, value in env.items() if _SECRET_NAME.search(name) and len(value) >= 6]


def expand(value: str) -> str:
    """A channel setting with its `${VAR}`s expanded; an unset variable is a ChannelError."""
    from revetl.config import expand_env
    from revetl.errors import ConfigError

    try:
        return expand_env(value).strip()
    except ConfigError as exc:
        raise ChannelError(str(exc)) from None


def send(channel: Channel, payload: dict[str, Any], secrets: list[str]) -> None:
    """Deliver one alert's payload to `channel`; ChannelError (one sentence, scrubbed) if it was not."""
    try:
        if isinstance(channel, SlackChannel):
            _post(expand(channel.url.get_secret_value()), json.dumps(slack_message(payload)).encode(), {},
                  channel.timeout, "Slack")
        elif isinstance(channel, WebhookChannel):
            body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
            timestamp = str(int(dt.datetime.now(dt.timezone.utc).timestamp()))
            headers = {
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(expand(channel.secret.get_secret_value()), timestamp, body),
                "X-Revetl-Event": f"alert.{payload['state']}",
                "X-Revetl-Delivery": uuid.uuid4().hex,
            }
            url = expand(channel.url)
            if not url.startswith(("http://", "https://")):
                raise ChannelError(f"the webhook URL is not an http(s) URL once expanded: {url[:60]!r}")
            _post(url, body, headers, channel.timeout, "the webhook")
        else:
            _send_email(channel, payload)
    except ChannelError as exc:
        raise ChannelError(scrub(str(exc), secrets)) from None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Revetl-Signature` value (revetl/signing.py: the webhook destination signs the same way)."""
    return signature(secret.encode(), timestamp, body)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float, what: str) -> None:
    import httpx  # loaded only when an alert is sent

    try:
        answer = httpx.post(url, content=body, timeout=timeout, headers={
            "Content-Type": "application/json", "User-Agent": "revetl-alerts/1", **headers})
    except httpx.TimeoutException:
        raise ChannelError(f"{what} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise ChannelError(f"{what} could not be reached ({type(exc).__name__}: {exc})") from None
    if not answer.is_success:
        text = " ".join(answer.text.split())[:200]
        raise ChannelError(f"{what} answered {answer.status_code}" + (f": {text}" if text else ""))


def _mrkdwn(text: str) -> str:
    """Text Slack shows as written (its three control characters escaped)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_STATES = {"failing": "FAILING", "recovered": "Recovered", "test": "Test"}


def headline(payload: dict[str, Any]) -> str:
    return f"{_STATES.get(payload['state'], payload['state'])}: {payload['summary']}"


def _lines(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of the facts worth a line in a message, in reading order."""
    shown = [("Sync", payload.get("sync")), ("Audience", payload.get("audience")), ("Run", payload.get("run_id")),
             ("Target", payload.get("target"))]
    counts = payload.get("counts") or {}
    shown += [(name.replace("_", " ").capitalize(), f"{value:,}") for name, value in counts.items() if value is not None]
    shown += [("Rule", payload["rule"]), ("Since", payload["since"]), ("Project", payload["project"])]
    return [(label, str(value)) for label, value in shown if value is not None]


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (notifications, fallback) and blocks with the facts."""
    icon = {"failing": ":red_circle:", "recovered": ":large_green_circle:"}.get(payload["state"], ":bell:")
    top = f"{icon} *{_mrkdwn(headline(payload))}*"
    if payload.get("reason"):
        top += f"\n{_mrkdwn(payload['reason'])}"
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{_mrkdwn(value)}"} for label, value in _lines(payload)]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": top}}]
    for start in range(0, len(fields), 10):  # Slack takes at most 10 fields per section
        blocks.append({"type": "section", "fields": fields[start:start + 10]})
    return {"text": f"{icon} {_mrkdwn(headline(payload))}", "blocks": blocks}


def email_text(payload: dict[str, Any]) -> str:
    """The plain-text body of an alert email."""
    body = [headline(payload), ""]
    if payload.get("reason"):
        body += [payload["reason"], ""]
    body += [f"{label + ':':<18}{value}" for label, value in _lines(payload)]
    body += ["", "Sent by revetl alerts once per change of state: a recovery follows when this clears."]
    return "\n".join(body) + "\n"


def _send_email(channel: EmailChannel, payload: dict[str, Any]) -> None:
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage()
    message["Subject"] = f"[revetl] {headline(payload)}"[:200]
    message["From"] = channel.from_
    message["To"] = ", ".join(channel.to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=channel.from_.split("@")[-1])
    message.set_content(email_text(payload))
    try:
        with smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout) as smtp:
            if channel.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if channel.username is not None and channel.password is not None:
                smtp.login(expand(channel.username.get_secret_value()), expand(channel.password.get_secret_value()))
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        reason = getattr(exc, "smtp_error", None)
        detail = reason.decode(errors="replace") if isinstance(reason, bytes) else (
            getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        raise ChannelError(f"the SMTP server {channel.host}:{channel.port} refused or failed ({detail})") from None
