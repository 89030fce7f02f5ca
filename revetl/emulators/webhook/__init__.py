"""A receiver of revetl's webhook destination: signature, replay window, idempotency keys, per-row verdicts."""

from revetl.emulators.webhook.api import WebhookEmulator

__all__ = ["WebhookEmulator"]
