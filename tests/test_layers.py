"""Imports point one way: fronts -> engine.api -> stream/offline -> pipeline -> voices/dsp -> ground.

Read from the source (every import, also those inside functions), so a wrong-way import fails here
before it turns into a cycle or a GUI dependency in the engine.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each engine module's floor; a module may import modules of its own package or of lower floors.
FLOORS: dict[str, int] = {
    "cuda_ops": 0,
    "engine.errors": 0, "engine.paths": 0, "engine.params": 1, "engine.ringbuffer": 0,
    "engine.health": 0, "engine.weights": 1, "engine.accelerators": 0, "engine.io.portaudio": 0,
    "engine.config": 2, "engine.dsp": 2, "engine.io": 2,
    "engine.settings": 3, "engine.voices": 3, "engine.separation": 3,
    "engine.pipeline": 4,
    "engine.offline": 5, "engine.stream": 5, "engine.jobs": 6,
    "engine.api": 7,
    "engine": 0,  # the package itself: its __init__ holds only the version
}
FRONTS = ("autovoice", "autovoice_desktop", "engine.cli", "engine.server")
# What a front may take from the engine: the door, its errors, the health types.
FRONT_DOOR = ("engine.api", "engine.errors", "engine.health")
QT = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from engine import api` imports the module engine.api
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                      if (ROOT / Path(*node.module.split("."), a.name)).with_suffix(".py").exists()
                      or (ROOT / Path(*node.module.split("."), a.name) / "__init__.py").exists()]
    return found


def sources() -> list[Path]:
    files = [ROOT / "autovoice.py"]
    for pkg in ("engine", "autovoice_desktop", "cuda_ops"):
        files += sorted((ROOT / pkg).rglob("*.py"))
    return files


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def floor_of(name: str) -> tuple[str, int] | None:
    best = None
    for prefix, floor in FLOORS.items():
        if within(name, prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, floor)
    return best


def is_front(name: str) -> bool:
    return any(within(name, f) for f in FRONTS)


def test_every_engine_module_has_a_floor():
    missing = [module_name(p) for p in sources()
               if not is_front(module_name(p)) and floor_of(module_name(p)) in (None, ("engine", 0))
               and module_name(p) != "engine"]
    assert not missing, f"give these modules a floor in tests/test_layers.py: {missing}"


def test_imports_point_down():
    wrong = []
    for path in sources():
        me = module_name(path)
        for line, target in imports_of(path):
            top = target.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if top in QT and not within(me, "autovoice_desktop"):
                wrong.append(f"{where}: only the desktop app may import Qt")
            if top not in ("engine", "autovoice_desktop", "autovoice", "cuda_ops"):
                continue
            if is_front(me):
                if within(target, "autovoice_desktop") or target == "autovoice":
                    if not (within(me, "autovoice_desktop") or me == "autovoice"):
                        wrong.append(f"{where}: only the launcher opens the desktop app")
                    continue
                own = next(f for f in FRONTS if within(me, f))
                if within(target, own) or target == "engine" or any(within(target, d) for d in FRONT_DOOR):
                    continue
                if me == "autovoice" and (within(target, "engine.cli") or within(target, "engine.server")):
                    continue  # the launcher dispatches to the fronts
                wrong.append(f"{where}: a front talks to engine.api, engine.errors and engine.health only")
                continue
            if is_front(target) or within(target, "autovoice_desktop") or target == "autovoice":
                wrong.append(f"{where}: the engine never imports a front")
                continue
            mine, theirs = floor_of(me), floor_of(target)
            if mine is None or theirs is None:
                continue  # reported by test_every_engine_module_has_a_floor
            if mine[0] != theirs[0] and theirs[1] >= mine[1]:
                wrong.append(f"{where}: floor {mine[1]} ({mine[0]}) may not import floor {theirs[1]} ({theirs[0]})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_way_import(tmp_path, monkeypatch):
    """The rules above can fail: a pipeline that imported the stream layer would be reported."""
    assert floor_of("engine.pipeline")[1] < floor_of("engine.stream.worker")[1]
    assert not is_front("engine.pipeline") and is_front("engine.server.app")
    probe = ROOT / "engine" / "_layer_probe.py"
    try:
        probe.write_text("from engine.stream.worker import Worker\nimport PySide6\n")
        monkeypatch.setitem(FLOORS, "engine._layer_probe", 4)
        try:
            test_imports_point_down()
        except AssertionError as exc:
            text = str(exc)
        else:
            text = ""
        assert "_layer_probe.py:1 imports engine.stream.worker" in text
        assert "_layer_probe.py:2 imports PySide6" in text
    finally:
        probe.unlink(missing_ok=True)
