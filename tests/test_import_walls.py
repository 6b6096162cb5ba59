"""The walls between the packages hold (docs/ARCHITECTURE.md, "Who may import whom").

The contracts are import-linter's, declared in pyproject.toml: the contract imports none of
the others, the server neither the worker nor the shell, the worker neither the server nor
the shell. The linter reads the source, so an import inside a function counts too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_package_imports_across_its_wall() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "3 kept, 0 broken" in report, report
