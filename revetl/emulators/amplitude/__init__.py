"""Amplitude's HTTP V2 API (`POST /2/httpapi`), as a local emulator."""

from revetl.emulators.amplitude.api import AmplitudeEmulator

__all__ = ["AmplitudeEmulator"]
