"""AutoVoice engine: everything that makes sound. Imports no Qt, ever."""

__version__ = "0.1.0"
