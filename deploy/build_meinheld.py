"""Build meinheld 1.0.2 against the greenlet installed beside it, and install it.

Why: meinheld's source bundles ``greenlet.h`` from greenlet 0.4 (2013) and reads a
greenlet's parent and state straight from struct fields. greenlet 2 and 3 no
longer have those fields, so the PyPI build crashes as soon as a request waits
cooperatively (``meinheld.server.trampoline``), which the service does on every
Redis call (``service/coop.py``). Compiled against the installed greenlet's own
header, the same reads go through greenlet's C API. That API returns the parent
as a new reference where meinheld expects a borrowed one, so it is released.

The build is installed as version ``1.0.2+greenlet3``; the service makes Redis
waits cooperative only under that build and blocks the worker otherwise.

Usage: ``python deploy/build_meinheld.py`` with the virtualenv's Python.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "1.0.2"
LOCAL_VERSION = f"{VERSION}+greenlet3"

# (file, text in meinheld's source, replacement): each must match exactly once.
EDITS = (
    (
        "meinheld/server/greensupport.c",
        "  return (PyObject *)PyGreenlet_GET_PARENT((PyGreenlet *)g);\n",
        "  PyObject *parent = (PyObject *)PyGreenlet_GetParent((PyGreenlet *)g);\n"
        "  Py_XDECREF(parent); /* callers expect a borrowed reference */\n"
        "  return parent;\n",
    ),
    (
        "meinheld/server/greensupport.c",
        "int greenlet_dead(PyObject *g) {\n",
        "int greenlet_dead(PyObject *g) {\n  import_greenlet();\n",
    ),
    ("setup.py", "'greenlet>=0.4.5,<0.5'", "'greenlet>=3'"),
    ("setup.py", f'version="{VERSION}"', f'version="{LOCAL_VERSION}"'),
)


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def patch_source(src: Path) -> None:
    import greenlet  # the one this build must match

    header = Path(greenlet.__file__).parent / "greenlet.h"
    shutil.copyfile(header, src / "meinheld/server/greenlet.h")
    for name, old, new in EDITS:
        path = src / name
        text = path.read_text()
        if text.count(old) != 1:
            sys.exit(f"build_meinheld: {name} is not the expected meinheld {VERSION} source")
        path.write_text(text.replace(old, new))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="meinheld-build-") as tmp:
        work = Path(tmp)
        sdist = ("--no-deps", "--no-binary", ":all:", f"meinheld=={VERSION}")
        pip("download", "-q", *sdist, "-d", str(work))
        with tarfile.open(work / f"meinheld-{VERSION}.tar.gz") as tar:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(work, **safe)  # type: ignore[arg-type]
        src = work / f"meinheld-{VERSION}"
        patch_source(src)
        pip("install", "-q", "--no-deps", "--force-reinstall", str(src))


if __name__ == "__main__":
    main()
