"""Mixpanel's Import API (`POST /import`), as a local emulator."""

from revetl.emulators.mixpanel.api import MixpanelEmulator

__all__ = ["MixpanelEmulator"]
