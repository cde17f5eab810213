"""Build hooks that put ``framebridge-children.pth`` into site-packages (pyproject.toml has the rest).

The file makes a child interpreter attachable at start-up when ``BRIDGE_CHILDREN=1`` is
in its environment, and does nothing else (src/bridge/children.py). A .pth file must
sit at the top of site-packages, which package data cannot reach, so:

* a wheel gets it from ``build_py``, which copies it to the top of the build tree;
* an editable install (PEP 660) gets it from ``editable_wheel``, which copies it to the
  top of the editable wheel it builds beside setuptools' own ``__editable__`` files.

tests/test_children.py::test_the_pth_hook_ships_in_wheels_and_editable_installs checks both.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = Path(__file__).resolve().parent / "src" / "framebridge-children.pth"


class BuildPyWithPth(build_py):
    """build_py, plus the .pth file at the top of the build tree (the wheel's root)."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(PTH), str(Path(self.build_lib, PTH.name)), preserve_mode=False)


cmdclass = {"build_py": BuildPyWithPth}

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # setuptools older than 64: no PEP 660 editable installs to hook
    pass
else:

    class EditableWheelWithPth(editable_wheel):
        """editable_wheel, plus the .pth file among the files of the editable wheel."""

        def _install_namespaces(self, installation_dir, pth_prefix):  # type: ignore[no-untyped-def]
            # Called with the directory whose files become the editable wheel's own.
            super()._install_namespaces(installation_dir, pth_prefix)
            shutil.copyfile(PTH, Path(installation_dir, PTH.name))

    cmdclass["editable_wheel"] = EditableWheelWithPth

setup(cmdclass=cmdclass)
