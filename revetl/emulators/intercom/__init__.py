"""The Intercom REST API emulator: `api` (routes and hooks), `workspace` (contacts, tags, data
attributes and their rules), `search` (the query language of `POST /contacts/search`)."""

from revetl.emulators.intercom.api import IntercomEmulator

__all__ = ["IntercomEmulator"]
