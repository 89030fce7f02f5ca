"""`alerts:` in revetl.yml: the channels alerts go to and the rules that send them, strictly validated.

    alerts:
      channels:                          # name -> where an alert goes
        ops: {type: slack, url: ${SLACK_WEBHOOK_URL}}
        hook: {type: webhook, url: https://example.com/revetl, secret: ${ALERT_WEBHOOK_SECRET}}
        mail: {type: email, host: smtp.example.com, from: revetl@example.com, to: [data@example.com]}
      rules:                             # what is watched, and which channels hear of it
        - {when: sync_failed, channels: [ops, hook]}
        - {when: rejected_rows, share: 0.05, channels: [ops]}
        - {when: violations, share: 0.01, channels: [ops]}   # tracking plans: a source's events faulted
        - {when: violations, channels: [ops]}                # ... or each kind of violation that appears

Secrets (a Slack webhook URL, a signing secret, an SMTP login) must be `${VAR}` references: a secret
written in revetl.yml would end up in git. They are expanded only when an alert is sent. This module
imports nothing of revetl's, so that `config.py` can import it.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "AlertSettings",
    "Channel",
    "EmailChannel",
    "Rule",
    "RULE_KINDS",
    "SlackChannel",
    "WebhookChannel",
]

SYNC_RULES = ("sync_failed", "rejected_rows", "audience_size")
RULE_KINDS = (*SYNC_RULES, "build_failed", "collector_degraded", "violations")
_SHARED = ("rejected_rows", "audience_size")  # the rules that need a `share`
_MAY_SHARE = (*_SHARED, "violations")  # violations: with a share, a rate; without, each kind that appears

_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$")
# The channel names of the `alerts:` block being validated, for the rules' check of their `channels`.
_KNOWN: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar("revetl_alert_channels", default=None)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _from_environment(example: str) -> AfterValidator:
    """A secret setting's check: a `${VAR}` reference (e.g. `${example}`), never the secret itself."""

    def check(value: SecretStr) -> SecretStr:
        if not _REFERENCE.match(value.get_secret_value().strip()):
            raise ValueError(f"must come from the environment, e.g. `${{{example}}}`: a secret written in "
                             "revetl.yml ends up in git")
        return value

    return AfterValidator(check)


def _matching(pattern: str, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not re.match(pattern, value):
            raise ValueError(f"must be {what}, not {value!r}")
        return value

    return AfterValidator(check)


_ADDRESS = Annotated[str, _matching(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "an email address")]


class SlackChannel(_Strict):
    """A Slack incoming webhook; its URL is the secret (whoever has it can post to the channel)."""

    type: Literal["slack"]
    url: Annotated[SecretStr, _from_environment("SLACK_WEBHOOK_URL")]
    timeout: float = Field(10.0, gt=0)

    def secrets(self) -> list[str]:
        return [self.url.get_secret_value()]


class WebhookChannel(_Strict):
    """A JSON POST to any URL, signed with HMAC-SHA256 of `secret` (README "Alerts" says how to verify)."""

    type: Literal["webhook"]
    url: Annotated[str, _matching(r"^(https?://\S+|\$\{.+\})$", "an http(s) URL (or a `${VAR}` holding one)")]
    secret: Annotated[SecretStr, _from_environment("ALERT_WEBHOOK_SECRET")]
    timeout: float = Field(10.0, gt=0)

    def secrets(self) -> list[str]:
        return [self.secret.get_secret_value()]


_LOGIN = Annotated[SecretStr, _from_environment("SMTP_PASSWORD")]


class EmailChannel(_Strict):
    """Email over SMTP; `starttls` upgrades the connection before `username`/`password` log in."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(25, ge=1, le=65535)
    from_: _ADDRESS = Field(alias="from")
    to: list[_ADDRESS] = Field(min_length=1)
    starttls: bool = False
    username: _LOGIN | None = None
    password: _LOGIN | None = None
    timeout: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _login_whole(self) -> EmailChannel:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both `username` and `password` to log in, or neither")
        return self

    def secrets(self) -> list[str]:
        return [value.get_secret_value() for value in (self.username, self.password) if value is not None]


Channel = Annotated[Union[SlackChannel, WebhookChannel, EmailChannel], Field(discriminator="type")]


class Rule(_Strict):
    """One thing to watch (`when`) and the channels that hear when it starts failing and when it recovers.

    `share`: rejected_rows fires above that share of the rows the destination answered; audience_size when
    the audience's member count moved by more than that share of its previous run's. `syncs` limits a
    sync rule to those syncs (default: every sync). `for_seconds`: how long the collector must stay
    degraded before it counts (30); for violations, the collector's window (300): the share is of the
    events of the last window, and a kind recovers after a window without it. `name` tells two rules of
    one kind apart (default: `when`, and the share)."""

    when: Literal["sync_failed", "rejected_rows", "audience_size", "build_failed", "collector_degraded", "violations"]
    channels: list[str] = Field(min_length=1)
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]+$")
    share: float | None = Field(None, ge=0)
    syncs: list[str] | None = Field(None, min_length=1)
    for_seconds: float | None = Field(None, ge=0)

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, names: list[str]) -> list[str]:
        known = _KNOWN.get()
        unknown = [name for name in names if known is not None and name not in known]
        if unknown:
            listed = ", ".join(sorted(known or ())) or "none is defined"
            raise ValueError(f"`{unknown[0]}` is not a channel in `alerts.channels` ({listed})")
        return names

    @model_validator(mode="after")
    def _options_fit_the_kind(self) -> Rule:
        if self.when in _SHARED and self.share is None:
            example = "0.05" if self.when == "rejected_rows" else "0.2"
            raise ValueError(f"`{self.when}` needs a `share`, e.g. `share: {example}`")
        if self.when not in _MAY_SHARE and self.share is not None:
            raise ValueError(f"`share` applies to rejected_rows, audience_size and violations, not `{self.when}`")
        if self.when in ("rejected_rows", "violations") and self.share is not None and self.share > 1:
            raise ValueError(f"a share of {'rejected rows' if self.when == 'rejected_rows' else 'events'} is between 0 and 1")
        if self.when not in SYNC_RULES and self.syncs is not None:
            raise ValueError(f"`syncs` applies to the sync rules ({', '.join(SYNC_RULES)}), not `{self.when}`")
        if self.when not in ("collector_degraded", "violations") and self.for_seconds is not None:
            raise ValueError(f"`for_seconds` applies to collector_degraded and violations, not `{self.when}`")
        return self

    @property
    def id(self) -> str:
        """What the alert state is kept under: `name`, else the kind (with its share)."""
        if self.name:
            return self.name
        return f"{self.when}>{self.share:g}" if self.share is not None else self.when

    @property
    def wait_seconds(self) -> float:
        if self.for_seconds is not None:
            return self.for_seconds
        return 300.0 if self.when == "violations" else 30.0

    def watches(self, sync: str) -> bool:
        return self.syncs is None or sync in self.syncs


class AlertSettings(_Strict):
    """`alerts:` in revetl.yml (see the module docstring); empty: no alert is ever sent."""

    channels: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], Channel] = {}
    rules: list[Rule] = []

    @model_validator(mode="wrap")
    @classmethod
    def _rules_see_the_channels(cls, raw: Any, handler: Any) -> AlertSettings:
        names = raw.get("channels") if isinstance(raw, dict) else None
        token = _KNOWN.set(frozenset(map(str, names)) if isinstance(names, dict) else frozenset())
        try:
            return handler(raw)
        finally:
            _KNOWN.reset(token)

    @model_validator(mode="after")
    def _rule_ids_unique(self) -> AlertSettings:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"two rules are both `{rule.id}`: give one of them a `name`")
            seen.add(rule.id)
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.rules)

    def rules_for(self, *kinds: str) -> Iterator[Rule]:
        return (rule for rule in self.rules if rule.when in kinds)

    def secrets(self) -> list[str]:
        """The channels' secrets as written (`${VAR}` references); `channels.expanded_secrets` expands them."""
        return [secret for channel in self.channels.values() for secret in channel.secrets()]
