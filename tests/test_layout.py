"""The architecture rules that keep the engine usable headless."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_QT = """
import sys, importlib, pkgutil
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph'):
            raise ImportError('Qt is blocked: the engine must not import it (' + name + ')')
        return None
sys.meta_path.insert(0, Blocker())
import engine
skip = ('engine.voices.rvc', 'engine.server')  # optional extras, imported on demand
for m in pkgutil.walk_packages(engine.__path__, 'engine.'):
    if m.name.startswith(skip):
        continue
    importlib.import_module(m.name)
from engine.api import Engine
e = Engine(load_default_voice=False)
e.load_voice('natural').result()
e.close()
print('ok')
"""


def test_engine_imports_and_runs_with_qt_blocked():
    proc = subprocess.run([sys.executable, "-c", BLOCK_QT], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_product_layout_exists():
    for name in ("autovoice_desktop", "engine", "cuda_ops", "tests", "resources", "packaging",
                 "pyproject.toml", "Dockerfile", "README.md"):
        assert (ROOT / name).exists(), name


def test_audio_callbacks_do_no_work_beyond_copying():
    """The audio-thread code (every __call__ in engine/io/callbacks.py) may only copy and count."""
    import ast

    src = (ROOT / "engine" / "io" / "callbacks.py").read_text()
    calls = [ast.get_source_segment(src, node) for node in ast.walk(ast.parse(src))
             if isinstance(node, ast.FunctionDef) and node.name == "__call__"]
    assert len(calls) == 3
    for body in calls:
        for forbidden in ("log", "print(", "Lock", "acquire", "torch", "np.zeros", "np.empty", "np.concatenate",
                          "sleep", "queue", ".put(", ".get(", "import", "process("):
            assert forbidden not in body, (forbidden, body)
