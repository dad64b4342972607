"""User-facing errors.

Every error that reaches a user (CLI, GUI dialog, HTTP response) is an ``AutoVoiceError`` whose
message is one sentence: what was wrong and what to do about it. Anything else escaping is a bug.
"""

from __future__ import annotations


class AutoVoiceError(Exception):
    """An error whose message is fit to show a user as it is."""


class AudioFileError(AutoVoiceError):
    """An input or output audio file that cannot be used."""


class NotAudioError(AudioFileError):
    """A file that is no audio at all (as opposed to audio that is damaged or cut short)."""


class DeviceError(AutoVoiceError):
    """An audio device that cannot be opened, vanished or does not support the request."""


class VoiceError(AutoVoiceError):
    """An unknown voice, or a voice/model file that cannot be loaded."""


class VoiceNotFound(VoiceError):
    """A well-formed voice name that is not installed."""


class ModelFormatError(VoiceError):
    """A model file that is not what it claims to be (wrong format, unsafe pickle, wrong keys)."""


class ConfigError(AutoVoiceError):
    """A setting outside its valid range."""
