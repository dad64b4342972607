"""The ``autovoice`` command: opens the desktop app, the headless server or a terminal command.

    autovoice [gui]      -> autovoice_desktop (the window)
    autovoice serve ...  -> engine.server (HTTP API, probes, metrics)
    autovoice CMD ...    -> engine.cli (devices, voices, live, convert, export-onnx)

It lives outside ``engine/`` so that the engine never depends on the fronts: each front depends on
``engine.api`` only, and this file is the one place that knows all three.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from engine import cli
from engine.errors import AutoVoiceError


def display_problem() -> str | None:
    """On Linux, why Qt could not open a window (it would abort the process), or None if it can."""
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None  # offscreen, wayland, eglfs...: the user chose
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("No display was found (DISPLAY is not set), so the desktop app cannot open; use "
                "'autovoice live' or 'autovoice convert' in this terminal, or 'autovoice serve' for headless mode.")
    if not os.environ.get("WAYLAND_DISPLAY") or platform.startswith("xcb"):
        import ctypes.util

        if ctypes.util.find_library("xcb-cursor") is None:
            return ("Qt needs the library libxcb-cursor0 to open a window on X11; install it "
                    "(sudo apt-get install libxcb-cursor0) and run autovoice again.")
    return None


def run_gui(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    problem = display_problem()
    if problem:
        if args.command is None:
            parser.print_help()
            print(file=sys.stderr)
        raise AutoVoiceError(problem)
    try:
        from autovoice_desktop.app import main as gui_main
    except ImportError as exc:
        if args.command == "gui":
            raise AutoVoiceError(
                f"The desktop app is not available ({exc.name} is missing); run: pip install 'autovoice[gui]'."
            ) from None
        parser.print_help()
        return 0
    return gui_main()


def run_server(args: argparse.Namespace) -> int:
    try:
        from engine.server.app import serve
    except ImportError as exc:
        raise AutoVoiceError(
            f"Headless mode needs the server extras ({exc.name} is missing); run: pip install 'autovoice[server]'."
        ) from None
    return serve(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    cli.setup_logging(args)
    if args.command in (None, "gui"):
        return cli.guarded(lambda: run_gui(args, parser), args)
    if args.command == "serve":
        return cli.guarded(lambda: run_server(args), args)
    return cli.guarded(lambda: cli.run(args), args)


if __name__ == "__main__":
    sys.exit(main())
