"""Let pytest-cython collect the doctests of _ext/moshpit/*.pyx from the installed modules.

pytest-cython imports a .pyx by the module name pytest derives from its path
(``_ext.moshpit.codec`` under --import-mode=importlib, ``codec`` under prepend).
Neither names the compiled module, which lives in the installed ``moshpit``
package, so both names are pointed at it before collection starts.
"""

import importlib
import sys
from pathlib import Path

_EXT = Path(__file__).parent / "_ext" / "moshpit"


def pytest_configure(config):
    root = Path(str(config.rootpath)).resolve()
    for source in sorted(_EXT.glob("*.pyx")):
        module = importlib.import_module(f"moshpit.{source.stem}")
        try:
            dotted = ".".join(source.resolve().relative_to(root).with_suffix("").parts)
        except ValueError:  # rootdir elsewhere: only the prepend-mode name applies
            dotted = None
        for alias in filter(None, (dotted, source.stem)):
            sys.modules.setdefault(alias, module)
