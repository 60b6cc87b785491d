"""The layering the README describes: the site runs on requirements.txt alone, without the commands' tools."""

import ast
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# The modules with a command line (a `main`): nothing imports them, the web process least of all.
COMMANDS = {f"ml.{path.stem}" for path in (ROOT / "ml").glob("*.py") if "\ndef main(" in path.read_text()}

# Imports every module the web process loads, with the development-only packages made unimportable.
WEB_PROCESS = """
import sys
for name in ("tqdm", "matplotlib", "sklearn"):
    sys.modules[name] = None  # `import tqdm` now raises ImportError
import django
django.setup()
from django.urls import resolve
import classifier.api, classifier.lifecycle, classifier.services, classifier.views, dermai_site.urls
resolve("/")
print(sorted(name for name in sys.modules if name.startswith("ml")))
"""


@pytest.mark.slow  # boots Django in a subprocess
def test_the_web_process_needs_no_command_line_tools():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dermai_site.settings"}
    result = subprocess.run([sys.executable, "-c", WEB_PROCESS], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))
    assert "ml.inference" in loaded
    assert not loaded & {"ml.data", "ml.report", *COMMANDS}


def test_no_ml_module_imports_a_command():
    for path in (ROOT / "ml").glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        assert not imported & COMMANDS, f"{path.name} imports the command(s) {sorted(imported & COMMANDS)}"


def test_ml_never_imports_django():
    for path in (ROOT / "ml").glob("*.py"):
        source = path.read_text()
        assert "import django" not in source and "from django" not in source, path
