"""Everything else is in pyproject.toml; this adds the native audio callback (engine/io/native_build.py).

Its build is optional: without a C compiler AutoVoice installs and streams with the Python callbacks,
and says so (engine/io/native.py).
"""

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        for ext in self.extensions:
            ext.optional = True


setup(cffi_modules=["engine/io/native_build.py:ffibuilder"], cmdclass={"build_ext": OptionalBuildExt})
