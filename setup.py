# The one thing pyproject.toml cannot say: build the cffi modules (commssl._openssl, and
# commssl._demo: the demo PKI of `python -m commssl`, apart from the hot extension).
import sys
import sysconfig

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel


class BDistWheel(bdist_wheel):
    def finalize_options(self) -> None:
        # abi3 on GIL builds of CPython only; free-threaded builds get a normal wheel.
        if sys.implementation.name == "cpython" and not sysconfig.get_config_var("Py_GIL_DISABLED"):
            self.py_limited_api = "cp39"
        super().finalize_options()


setup(
    cffi_modules=["build_ffi.py:ffibuilder", "build_ffi.py:demo_ffibuilder"],
    cmdclass={"bdist_wheel": BDistWheel},
)
