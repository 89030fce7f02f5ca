"""Slack: a digest of who entered and left an audience, posted to an incoming webhook.

One message per batch (`batch_size` rows, 1,000 by default, so most runs post one message):

    header   "churn risk: +12 / -3"                          (plain text, at most 150 characters)
    section  "*Entered (12)*" and one line per person         (mrkdwn, at most 3,000 characters a section)
             "• Ann Lee — plan: pro", ... "…and 4 more"
    section  "*Left (3)*" ...
    section  "*Changed (2)*" ...                              (only with `changes: true`)
    context  "sync churn_to_slack · 2 changed"

A line shows the `display` field (default: the key) and the other mapped fields. Within Slack's limits
(https://docs.slack.dev: 50 blocks a message, 3,000 characters a section, 150 a header, message text
truncated past 40,000): at most `max_names` lines a group and 12,000 characters of lines a message, the
rest counted as "…and N more". Text is escaped as Slack asks (&, <, >), so a name can never mention
@channel or hide a link.

Acknowledged means: the message that named or counted the row was accepted (Slack answered 200 `ok`).
A batch with nothing to say (only changes, `changes: false`) is acknowledged without a request. Answers:
429 waits for `Retry-After` (the shared policy), 5xx is retried, 403 (`invalid_token`,
`action_prohibited`) stops the run, as do 404 (`no_service`, `channel_not_found`) and 410
(`channel_is_archived`); a 400 (`invalid_payload`, `invalid_blocks`, `no_text`) rejects the rows of that
message with Slack's error, to be named again by the next run. Slack allows one message a second per
webhook: the client holds itself to one every 1.1 s. The webhook URL is the credential: it is a secret, and its
path never appears in a message.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field, SecretStr, model_validator

from revetl.destinations.base import ACKNOWLEDGED, Destination, DestinationConfig, HttpOptions, Row, RowResult
from revetl.destinations.webhook import describe, refuse_membership
from revetl.errors import ConfigError

if TYPE_CHECKING:
    from revetl.sync.http import Http

__all__ = ["Digest", "Slack", "SlackConfig", "escape"]

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_LINES_TEXT = 12_000  # below the ~13,000 characters of blocks Slack accepts in one message
MAX_LINE = 300


class SlackConfig(DestinationConfig):
    base_url: str = ""  # not set in a sync file: the webhook URL's scheme and host
    webhook_url: SecretStr  # https://hooks.slack.com/services/T.../B.../..., through ${VAR}
    title: str | None = Field(None, min_length=1, max_length=100)  # default: the audience, "churn_risk" -> "churn risk"
    display: str | None = None  # the audience column each line names (one of `fields`); default: the key
    changes: bool = False  # also list members whose fields changed
    max_names: int = Field(20, ge=0, le=500)  # lines a group before "…and N more"
    batch_size: int = Field(1000, ge=1, le=100_000)  # rows a message

    @model_validator(mode="before")
    @classmethod
    def _origin(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "base_url" in data:
            raise ValueError("slack takes `webhook_url` (the incoming webhook's whole URL), not `base_url`")
        url = data.get("webhook_url")
        if isinstance(url, SecretStr):
            url = url.get_secret_value()
        if isinstance(url, str):
            parts = urllib.parse.urlsplit(url)
            # The message never repeats the URL: its path is the credential.
            if parts.scheme not in ("http", "https") or not parts.hostname or len(parts.path) < 2:
                raise ValueError("`webhook_url` must be an incoming webhook's http(s) URL, with its path")
            if parts.username is not None or parts.password is not None:
                raise ValueError("`webhook_url` must not hold credentials (user:password@)")
            data = {**data, "base_url": f"{parts.scheme}://{parts.netloc}"}
        return data


def escape(text: str) -> str:
    """Text as Slack's mrkdwn shows it literally: &, < and > escaped, line breaks flattened."""
    return " ".join(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").split())


class Digest:
    """The message for one batch: counts, the first names of each group, the rest counted."""

    def __init__(self, title: str, sync: str, display: str | None, changes: bool, max_names: int) -> None:
        self.title, self.sync, self.display, self.changes, self.max_names = title, sync, display, changes, max_names

    def line(self, row: Row) -> str:
        fields = row.fields
        name = row.key if self.display is None else fields.get(self.display)
        shown = escape(str(name if name not in (None, "") else row.key))
        rest = [f"{escape(k)}: {escape(str(v))}" for k, v in fields.items() if k != self.display and row.op != "remove"]
        text = f"• {shown}" + (f" — {', '.join(rest)}" if rest else "")
        return text if len(text) <= MAX_LINE else text[:MAX_LINE - 1] + "…"

    def summary(self, counts: dict[str, int]) -> str:
        text = f"{self.title}: +{counts['add']:,} / -{counts['remove']:,}"
        if self.changes and counts["change"]:
            text += f" / ~{counts['change']:,}"
        return text

    def message(self, rows: Sequence[Row]) -> dict[str, Any] | None:
        """The webhook payload (`text` for notifications, `blocks` for the channel), or None: nothing to say."""
        groups = {op: [row for row in rows if row.op == op] for op in ("add", "remove", "change")}
        counts = {op: len(members) for op, members in groups.items()}
        if not counts["add"] and not counts["remove"] and not (self.changes and counts["change"]):
            return None
        summary = self.summary(counts)
        header = summary if len(summary) <= MAX_HEADER else summary[:MAX_HEADER - 1] + "…"
        blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": header}}]
        budget = MAX_LINES_TEXT
        titles = {"add": "Entered", "remove": "Left", "change": "Changed"}
        shown = [op for op in (("add", "remove", "change") if self.changes else ("add", "remove")) if groups[op]]
        for index, op in enumerate(shown):
            room = MAX_BLOCKS - len(blocks) - 1 - (len(shown) - index - 1)  # the context, one for each group left
            sections, budget = self._sections(f"*{titles[op]} ({counts[op]:,})*", groups[op], budget, room)
            blocks += sections
        note = f"sync {escape(self.sync)}"
        if counts["change"] and not self.changes:
            note += f" · {counts['change']:,} changed"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
        return {"text": summary, "blocks": blocks}

    def _sections(self, title: str, rows: list[Row], budget: int, room: int) -> tuple[list[dict[str, Any]], int]:
        """The group's sections: its title, then lines while they fit in `budget` characters and `room` blocks."""
        texts, current, shown = [], title, 0
        for row in rows[:self.max_names]:
            line = self.line(row)
            if len(line) + 1 > budget:
                break
            if len(current) + 1 + len(line) > MAX_SECTION - 40:  # 40: room for "…and N more"
                if len(texts) + 1 >= room:
                    break
                texts.append(current)
                current = ""
            current = f"{current}\n{line}" if current else line
            budget -= len(line) + 1
            shown += 1
        if shown < len(rows):
            current += f"\n…and {len(rows) - shown:,} more"
        texts.append(current)
        return [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in texts], budget


class Slack(Destination[SlackConfig]):
    type = "slack"
    max_batch_size = 100_000
    default_concurrency = 1  # messages in order, one at a time
    # Incoming webhooks: one message a second (short bursts tolerated). Spaced 1.1 s apart, so that a first
    # request slowed by its connection's set-up never shares one of Slack's seconds with the next.
    published_rate_limit = (1, 1.1)

    def configure(self) -> None:
        refuse_membership(self)
        display = self.config.display
        if display is not None and display not in self.sync.fields:
            known = ", ".join(self.sync.fields) or "none"
            raise ConfigError(f"{self.sync.path}: `destination.display` names a column that `fields` does not map: "
                              f"{display!r} (mapped: {known})")
        title = self.config.title or self.sync.audience.replace("_", " ")
        self.digest = Digest(title, self.sync.name, self.sync.fields[display] if display else None,
                             self.config.changes, self.config.max_names)

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def secrets(self) -> list[str]:
        """The URL, and its path alone: an error names the path it was posted to."""
        url = self.config.webhook_url.get_secret_value()
        path = urllib.parse.urlsplit(url).path
        return [*super().secrets, path, *(part for part in path.split("/") if len(part) >= 8)]

    def http_options(self) -> HttpOptions:
        return HttpOptions(headers={"Content-Type": "application/json"}, describe=describe)

    async def send(self, http: Http, rows: Sequence[Row]) -> list[RowResult]:
        message = self.digest.message(rows)
        if message is None:
            return [ACKNOWLEDGED] * len(rows)
        url = self.config.webhook_url.get_secret_value()
        response = await http.request("POST", url, content=orjson.dumps(message))
        status, error = response.status_code, describe(response)
        if status < 300:
            return [ACKNOWLEDGED] * len(rows)
        if status in (404, 410):
            raise self.fatal(f"slack answered {status} {error}: the webhook was revoked, or its channel is gone "
                             "or archived", status)
        reason = self.rejected(None, f"slack {status} {error}").reason
        return [RowResult.rejected(reason)] * len(rows)
