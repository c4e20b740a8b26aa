"""Ships the top-level conf/ inside the package as liver_gan/conf; all metadata is in pyproject.toml.

conf/ keeps one source, the checkout's top level: a built wheel carries a copy, while an editable
install reads conf/ in place (liver_gan.cli.config_dir finds either).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildPyWithConf(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            shutil.copytree(CONF, Path(self.build_lib) / "liver_gan" / "conf", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithConf})
