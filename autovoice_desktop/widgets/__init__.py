"""Widgets of the AutoVoice window."""
