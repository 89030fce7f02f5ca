"""Slack incoming-webhook emulator: `POST /services/{team}/{bot}/{token}`, as Slack documents and answers it.

What it relies on (Slack docs "Sending messages using incoming webhooks", the changelog "Improving error
conditions for Incoming Webhooks" (2016-05-17), "Rate limits", the Block Kit reference):

- The URL is the credential. A known team and bot with another token: `403 invalid_token`; an unknown
  webhook: `404 no_service`. Answers are plain text, `ok` on success.
- The body is JSON (`Content-Type: application/json`); unparseable: `400 invalid_payload`; neither `text`
  nor `blocks`: `400 no_text`. Blocks: at most 50, each a header (plain text, at most 150 characters),
  section (text at most 3,000), context (at most 10 elements) or divider, else `400 invalid_blocks`.
  `text` past 40,000 characters is truncated, as Slack does.
- An archived channel answers `410 channel_is_archived` (`POST /_emulator/channel {"archived": true}`).
- One message a second per webhook (Slack tolerates short bursts; this emulator does not): `429` with
  `Retry-After` and the body `rate_limited`.

Options beyond the common ones: `token` (default $SLACK_WEBHOOK_TOKEN, else "dev-slack-token"), `team`
("T00000000"), `bot` ("B00000000"), `refuse_containing` (an injected fault: a message whose body holds
this text is answered `400 invalid_payload`). Control: `GET /_emulator/messages`, `POST /_emulator/channel`.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from typing import Any

from revetl.emulators.base import Emulator, Request, Response, Route

__all__ = ["SlackEmulator"]

MAX_TEXT = 40_000
MAX_BLOCKS = 50
LIMITS = {"header": 150, "section": 3000}


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, text, headers or {}, content_type="text/plain")


class SlackEmulator(Emulator):
    """One channel's incoming webhook, with Slack's checks, answers and rate limit."""

    name = "slack"
    default_port = 8095
    default_rate_limit = 1
    default_rate_window = 1.0
    extra_options = {"token": None, "team": "T00000000", "bot": "B00000000", "refuse_containing": None}

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._token = (self.config["token"] or os.environ.get("SLACK_WEBHOOK_TOKEN") or "dev-slack-token").encode()
        self.path = f"/services/{self.config['team']}/{self.config['bot']}/"  # + the token: never shown

    def client_url(self, base_url: str) -> str:
        """The webhook URL a client posts to (with the token), for the emulator served at `base_url`."""
        return f"{base_url}{self.path}{self._token.decode()}"

    def routes(self) -> Iterable[Route]:
        return [Route("POST", "/services/{team}/{bot}/{token}", self.post)]

    def control_routes(self) -> Iterable[Route]:
        return [Route("GET", "/_emulator/messages", lambda _: Response(200, {"messages": self.messages})),
                Route("POST", "/_emulator/channel", self.set_channel)]

    def reset_state(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.archived = False

    def authenticate(self, request: Request) -> Response | None:
        parts = request.path.split("/")  # authentication comes before routing: the path by hand
        if len(parts) != 5 or parts[2] != self.config["team"] or parts[3] != self.config["bot"]:
            return _text(404, "no_service")
        if not hmac.compare_digest(parts[4].encode(), self._token):
            return _text(403, "invalid_token")
        return None

    def _record(self, request: Request) -> dict[str, Any] | None:
        entry = super()._record(request)
        if entry is not None and entry["path"].startswith("/services/"):  # the token is the credential
            entry["path"] = "/".join(entry["path"].split("/")[:4] + ["[redacted]"])
        return entry

    def rate_limited(self, retry_after: float) -> Response:
        return _text(429, "rate_limited", {"Retry-After": str(max(1, round(retry_after + 0.499)))})

    def set_channel(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("archived"), bool):
            return Response(400, {"error": 'the body must be {"archived": true|false}'})
        self.archived = body["archived"]
        return Response(200, {"archived": self.archived})

    def post(self, request: Request) -> Response:
        if self.archived:
            return _text(410, "channel_is_archived")
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "application/json" not in request.headers.get("content-type", ""):
            return _text(400, "invalid_payload")
        refuse = self.config["refuse_containing"]
        if refuse and refuse.encode() in request.body:
            return _text(400, "invalid_payload")
        text, blocks = body.get("text"), body.get("blocks")
        if not (isinstance(text, str) and text) and not blocks:
            return _text(400, "no_text")
        if blocks is not None and not _valid_blocks(blocks):
            return _text(400, "invalid_blocks")
        message = {"text": (text or "")[:MAX_TEXT], "blocks": blocks or [], "ts": f"{self.clock():.6f}"}
        self.messages.append(message)
        self.count_applied("messages")
        return _text(200, "ok")


def _valid_blocks(blocks: Any) -> bool:
    """Slack's structural checks of the blocks this emulator knows."""
    if not isinstance(blocks, list) or not 0 < len(blocks) <= MAX_BLOCKS:
        return False
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind in LIMITS:
            text = block.get("text")
            if not isinstance(text, dict) or not isinstance(text.get("text"), str) or not text["text"]:
                return False
            if len(text["text"]) > LIMITS[kind] or (kind == "header" and text.get("type") != "plain_text"):
                return False
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= 10:
                return False
        elif kind != "divider":
            return False
    return True
