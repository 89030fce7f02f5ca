"""The Slack incoming-webhook emulator: one channel's webhook, Slack's limits, answers and rate limit."""

from revetl.emulators.slack.api import SlackEmulator

__all__ = ["SlackEmulator"]
