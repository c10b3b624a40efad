"""No copies, no pickles, for what stands for one C object or one connection."""

from __future__ import annotations

from typing import Any, NoReturn


class Unique:
    """No copies, no pickles: a copy would be a second owner of one C object."""

    __slots__ = ()
    _copy_hint = " (it stands for one C object)"
    _pickle_hint = " (it stands for a C object in this process)"

    def __copy__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be copied{self._copy_hint}")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        self.__copy__()

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be pickled{self._pickle_hint}")
