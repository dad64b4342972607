"""What the headless server allows, and the checks made before it listens.

Everything here is decided at start: the address and token (a non-loopback address without a token
is refused in one sentence), and the limits every request is held to (upload size, audio length,
concurrent conversions, time per conversion, stream sessions and their queues).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

from engine.errors import AutoVoiceError

TOKEN_ENV = "AUTOVOICE_TOKEN"
MIN_TOKEN_CHARS = 16


class ServerConfigError(AutoVoiceError):
    """A server setting that makes it unsafe or impossible to start."""


@dataclass(frozen=True)
class ServerConfig:
    token: str | None = None
    host: str | None = None  # the address or name it listens on (also accepted as a Host header without a token)
    require_stream: bool = False  # --live: ready only while the device stream runs
    max_upload_bytes: int = 50 * 1024 * 1024
    max_audio_s: float = 600.0
    max_conversions: int = 2  # conversions at once; the next one gets 429 at once
    convert_timeout_s: float = 120.0  # per conversion, queueing included; then 503
    upload_timeout_s: float = 60.0  # the whole request body must arrive within this; then 408
    max_streams: int = 4  # WebSocket sessions at once; the next one is closed with 1013
    stream_queue_frames: int = 8  # frames a session holds before it stops reading (backpressure)
    stream_max_frame_s: float = 1.0  # audio in one WebSocket message, at most
    stream_idle_timeout_s: float = 60.0  # a session that sends, or reads, nothing for this long is closed
    max_header_bytes: int = 16 * 1024  # request line + headers; more gets 431
    header_timeout_s: float = 10.0  # the request head must arrive within this; then 408 and closed
    reply_stall_timeout_s: float = 60.0  # a client that reads nothing of a reply this long is cut off

    def validated(self) -> "ServerConfig":
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ServerConfigError(
                f"The API token must be at least {MIN_TOKEN_CHARS} characters long; generate one with: "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'."
            )
        for name, lo in (("max_upload_bytes", 1), ("max_audio_s", 0.1), ("max_conversions", 1),
                         ("convert_timeout_s", 0.01), ("upload_timeout_s", 0.1), ("max_streams", 1),
                         ("stream_queue_frames", 1), ("stream_max_frame_s", 0.01), ("stream_idle_timeout_s", 0.1),
                         ("max_header_bytes", 1024), ("header_timeout_s", 0.1), ("reply_stall_timeout_s", 0.1)):
            if not getattr(self, name) >= lo:
                raise ServerConfigError(f"The server setting {name} must be at least {lo:g}, not {getattr(self, name)!r}.")
        return self


WEAK_TOKEN_MIN_DISTINCT = 8  # characters; a random 16-character token has about 14
PLACEHOLDER_WORDS = ("password", "secret", "changeme", "letmein", "qwerty", "admin")


def token_weakness(token: str) -> str | None:
    """Why ``token`` is easy to guess although long enough (one clause), or None.

    Length alone lets "aaaaaaaaaaaaaaaa" or "abcdefghijklmnop" through; these catch the usual
    ways a person types a token instead of generating one. Not a strength meter: a generated token
    (secrets.token_urlsafe) never trips them.
    """
    distinct = len(set(token))
    if distinct < WEAK_TOKEN_MIN_DISTINCT:
        return f"it uses only {distinct} different character{'s' if distinct != 1 else ''}"
    steps = [ord(b) - ord(a) for a, b in zip(token, token[1:])]
    if steps and sum(1 for d in steps if abs(d) == 1) >= 0.75 * len(steps):
        return "it is mostly a run of consecutive characters"
    lowered = token.lower()
    word = next((w for w in PLACEHOLDER_WORDS if w in lowered), None)
    if word is not None:
        return f"it contains the word '{word}'"
    return None


def token_warning(token: str | None) -> str | None:
    """The start-up warning for a weak token, or None."""
    reason = token_weakness(token) if token else None
    if reason is None:
        return None
    return (f"the API token is easy to guess ({reason}); anyone who guesses it can use this server, so generate "
            "one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'.")


def resolve_token(cli_token: str | None) -> str | None:
    """--token wins over AUTOVOICE_TOKEN; an empty value means no token."""
    token = cli_token if cli_token is not None else os.environ.get(TOKEN_ENV)
    token = (token or "").strip()
    return token or None


def _addresses(host: str, port: int) -> list[tuple]:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerConfigError(f"The host '{host}' cannot be resolved ({exc.strerror}); use an IP address such as 127.0.0.1.") from None


def is_loopback(host: str) -> bool:
    """True when every address ``host`` stands for is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise ServerConfigError(
            f"Refusing to listen on {host} without an API token: anyone who can reach it could use the server; "
            f"set {TOKEN_ENV} or pass --token (or keep the default --host 127.0.0.1)."
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket for uvicorn, bound here so that a taken port is one sentence, and port 0 works."""
    family, kind, proto, _, addr = _addresses(host, port)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise ServerConfigError(
            f"Cannot listen on {host} port {port} ({exc.strerror}); stop the program using it or choose another --port."
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
