# Written by hand (one function; ci/gen-stub covers _openssl): keep in step with
# build_ffi.DEMO.
"""Type stub for the compiled cffi module ``commssl._demo`` (the demo PKI of
``python -m commssl``; build_ffi.demo_ffibuilder, src/_cffi_src/demo.c)."""

from typing import Any

from ._openssl import FFI

class _Lib:
    def commssl_demo_cert(
        self, __a0: Any, __a1: Any, __a2: int, __a3: int, __a4: int, __a5: int, __a6: int,
        __a7: Any, __a8: Any, __a9: Any, __a10: Any,
    ) -> int: ...

ffi: FFI
lib: _Lib
