"""The one signature on what revetl POSTs to a receiver of the user's (the webhook destination, webhook alerts):

    X-Revetl-Timestamp: <seconds since the epoch when the request was signed>
    X-Revetl-Signature: sha256=<hex HMAC-SHA256 under the shared secret of "<timestamp>." + the raw body>

A receiver recomputes it over the bytes it received, compares in constant time, and refuses a timestamp far
from its own clock (a replay). README "Webhook" and "Alerts" show a receiver's code.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "signature"]

SIGNATURE_HEADER = "X-Revetl-Signature"
TIMESTAMP_HEADER = "X-Revetl-Timestamp"


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """`X-Revetl-Signature`'s value for `body` signed at `timestamp` (what a receiver recomputes)."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
