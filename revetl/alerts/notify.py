"""Observations -> changes of state -> one message per channel; a channel that fails is one warning.

For each observation and each channel of its rule, the channel is told only when the rule's state for
that subject differs from what the channel was last told (store.py): failing after ok sends an alert,
ok after failing a recovery, anything else nothing. A first observation that is not failing sends
nothing. A channel that cannot take the message (down, an error answer, a timeout, an unset variable)
gives one warning sentence through `warn`, and its state stays, so the next check tries again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from revetl.alerts.channels import Alert, ChannelError, environment_secrets, expand, send
from revetl.alerts.rules import Observation
from revetl.alerts.settings import AlertSettings
from revetl.alerts.store import AlertStore, Told
from revetl.runtime import SYSTEM, Clock

__all__ = ["Delivery", "changes", "channel_secrets", "deliver"]


@dataclass(frozen=True)
class Delivery:
    """One message due: `alert` to the channel `channel`."""

    alert: Alert
    channel: str


def changes(observations: Sequence[Observation], store: AlertStore, project: str, clock: Clock = SYSTEM) -> list[Delivery]:
    """The messages the observations call for: one per channel whose last word differs from the rule's state."""
    if not observations:
        return []
    known = store.load({seen.subject for seen in observations})
    now = clock.now()
    due = []
    for seen in observations:
        for channel in seen.rule.channels:
            last = known.get((seen.rule.id, seen.subject, channel))
            if seen.failing == (last is not None and last.failing):
                continue
            since = now if seen.failing else (last.since if last is not None else now)
            due.append(Delivery(Alert(seen, seen.failing, since, now, project), channel))
    return due


def deliver(settings: AlertSettings, due: Sequence[Delivery], store: AlertStore, warn: Callable[[str], None],
            secrets: Sequence[str] = (), clock: Clock = SYSTEM) -> list[Delivery]:
    """Send what `changes` found, record what each channel took, warn once per channel that took nothing.
    Returns the deliveries made."""
    if not due:
        return []
    known = [*secrets, *environment_secrets(), *channel_secrets(settings)]
    made, told = [], []
    for delivery in due:
        alert, name = delivery.alert, delivery.channel
        channel = settings.channels[name]
        payload = alert.payload(known)
        try:
            send(channel, payload, known)
        except ChannelError as exc:
            warn(f"alert \"{payload['summary']}\" not sent to channel {name} ({channel.type}): {exc}; "
                 "it is tried again at the next check while it still applies")
            continue
        made.append(delivery)
        seen = alert.observation
        told.append(Told((seen.rule.id, seen.subject, name), alert.failing, alert.since, seen.run_id,
                         payload["summary"], clock.now()))
    store.save(told)
    return made


def channel_secrets(settings: AlertSettings) -> list[str]:
    """The channels' secrets as they will be sent (expanded), plus as written; unset ones are skipped."""
    found = []
    for written in settings.secrets():
        found.append(written)
        try:
            found.append(expand(written))
        except ChannelError:
            pass
    return found
