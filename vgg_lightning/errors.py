"""The file system's refusals a user can act on (a full disk or quota, a read-only or forbidden folder, a name
over the file system's limit), each said in one line that names the path; and the one-line errors of the
commands beside the app (`python -m vgg_lightning.report`, `.export`, `.data.prepare`, `.data.check`). The app
itself prints them through `__main__.user_error`. Knows nothing of ours: every room may use it."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable

FULL_ERRORS = "HYDRA_FULL_ERROR"  # =1: every error with its traceback, in the app and beside it

FIXABLE = {  # errno -> what the user can do about it
    errno.ENOSPC: "no space left on its device: free some, or write elsewhere",
    errno.EDQUOT: "over your disk quota there: free some, or write elsewhere",
    errno.EROFS: "its file system is read-only: write elsewhere",
    errno.EACCES: "permission denied: check its permissions, or use another folder",
    errno.EPERM: "operation not permitted: check its permissions, or use another folder",
    errno.EFBIG: "the file is too large for its file system (or for this process's limit, ulimit -f)",
}


def file_system_error(error: BaseException) -> OSError | None:
    """The file system's error behind `error`: itself, or one it was raised from (torch reports a full disk
    while saving as a RuntimeError raised while handling the OSError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and (error.errno in FIXABLE or error.errno == errno.ENAMETOOLONG):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def too_long(path: str) -> str:
    """Which name of `path` is over its file system's limit (NAME_MAX bytes, 255 on most)."""
    limit, folder = 255, os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        limit = os.pathconf(folder or "/", "PC_NAME_MAX")
    except (OSError, ValueError):
        pass
    for name in os.path.abspath(path).split(os.sep):
        size = len(os.fsencode(name))
        if size > limit:
            return f"the name {name[:24]}... is {size} bytes, over its file system's limit of {limit}: shorten it"
    return f"the path is over the system's limit of {os.pathconf('/', 'PC_PATH_MAX')} bytes: shorten it"


def fixable(error: BaseException, path: str | None = None) -> tuple[str | None, str] | None:
    """(the path, what to do) for a full disk, a read-only or forbidden folder or a name too long (found in
    `error` or what it was raised from); None for any other error. `path` names the file when the error
    does not (a write through a file object)."""
    found = file_system_error(error)
    if found is None:
        return None
    where = found.filename if found.filename is not None else path
    if found.errno == errno.ENAMETOOLONG:
        return where, too_long(str(where)) if where else found.strerror
    return where, FIXABLE[found.errno]


def file_system_problem(error: BaseException, path: str | None = None) -> str | None:
    """`<path>: <what to do>` (see `fixable`), or None."""
    found = fixable(error, path)
    return None if found is None else f"{found[0] or 'a file'}: {found[1]}"


def one_line_errors(*expected: type[BaseException], code: int = 2) -> Callable:
    """A command's `main()` with the errors a user can fix (those `expected`, and the file system's
    refusals) printed alone, `error: <message>`, and `code` returned; any other error, or all of them under
    HYDRA_FULL_ERROR=1, shows its traceback."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except Exception as error:
                message = str(error) if isinstance(error, expected) else file_system_problem(error)
                if message is None or os.environ.get(FULL_ERRORS) == "1":
                    raise
                print(f"error: {message}", file=sys.stderr)
                return code

        return run

    return wrap
