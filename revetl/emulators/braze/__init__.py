"""The Braze REST API emulator: `api` (the server's routes and hooks), `profiles`, `rules`."""

from revetl.emulators.braze.api import BrazeEmulator

__all__ = ["BrazeEmulator"]
