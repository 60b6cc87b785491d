"""The layering the README describes: the site runs on requirements.txt alone, without the commands' tools."""

import ast
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

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
    assert not loaded & {"ml.data", "ml.train", "ml.evaluate", "ml.predict", "ml.guard_report", "ml.fit_gate"}


def test_ml_never_imports_django():
    for path in (ROOT / "ml").glob("*.py"):
        source = path.read_text()
        assert "import django" not in source and "from django" not in source, path
