"""Which files the router may trust, and why it refuses the others.

The router runs as root (or SYSTEM) and acts on what it reads: rule files
decide which programs run, the state directory holds caches in formats that
execute code when loaded (pickles) or name modules to import, the local
socket hands back the steps to perform. A file that another user can write,
or that another user owns, is a way for that user to run code as root. Two
policies, in the spirit of sshd's StrictModes and sudo's sudoers checks:

- *private* (the state directory and everything the router reads from it):
  owned by the router's user and not writable by its group or others;
- *admin* (rule files and their directory, template files, Apprise config
  files, ``run`` programs, router.toml): owned by root or the router's user
  and not writable by group or others; the directory holding one must not
  be writable by others either, unless it has the sticky bit (as /tmp),
  which keeps others from replacing the file.

Standard library only, with string paths: the handler's fast path imports
this. On Windows ownership and mode bits say little (ACLs decide), so
nothing is refused there; SECURITY.md says so.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Optional, Union

    PathLike = Union[str, "os.PathLike[str]"]

#: Ownership and modes are not checked where they do not decide access.
CHECKED = os.name == "posix" and not sys.platform.startswith("win")


class Untrusted(Exception):
    """A path the router refuses to read or act on; the message says why."""


def _who(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _writable_by(mode: int) -> Optional[str]:
    if mode & stat.S_IWOTH:
        return "any user"
    if mode & stat.S_IWGRP:
        return "its group"
    return None


def _describe(info: os.stat_result) -> str:
    return "directory" if stat.S_ISDIR(info.st_mode) else "file"


def private_problem(path: PathLike) -> Optional[str]:
    """Why ``path`` (a state directory, or a file in one) is not private to
    the router's user, or None. A missing path has no problem: it will be
    created private."""
    if not CHECKED:
        return None
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except OSError:
        return None
    kind = _describe(info)
    if info.st_uid != os.geteuid():
        return (
            f"{kind} {path} is owned by {_who(info.st_uid)}, not by the router's user"
            f" ({_who(os.geteuid())})"
        )
    writable = _writable_by(info.st_mode)
    if writable:
        return f"{kind} {path} is writable by {writable} (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def admin_problem(path: PathLike, *, check_directory: bool = True) -> Optional[str]:
    """Why ``path`` (a rule, template, config or program file, or a rules
    directory) may not decide what the router does, or None. Also checks the
    directory holding it (after following symlinks), unless told not to."""
    if not CHECKED:
        return None
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except OSError:
        return None  # the caller reports a missing file in its own words
    problem = _admin_stat_problem(path, info)
    if problem or not check_directory:
        return problem
    real = os.path.realpath(path)
    for directory in dict.fromkeys((os.path.dirname(os.path.abspath(path)), os.path.dirname(real))):
        try:
            holder = os.stat(directory)
        except OSError:
            continue
        problem = _admin_stat_problem(directory, holder, sticky_ok=True)
        if problem:
            return f"{problem}, and it holds {path}"
    return None


def _admin_stat_problem(path: str, info: os.stat_result, sticky_ok: bool = False) -> Optional[str]:
    kind = _describe(info)
    if info.st_uid not in (0, os.geteuid()):
        return (
            f"{kind} {path} is owned by {_who(info.st_uid)}, not by root or the router's user"
            f" ({_who(os.geteuid())})"
        )
    writable = _writable_by(info.st_mode)
    if writable and not (sticky_ok and info.st_mode & stat.S_ISVTX and writable == "any user"):
        return f"{kind} {path} is writable by {writable} (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def require_private_dir(path: PathLike) -> None:
    """Make ``path`` a private directory (0700) or refuse it.

    Created 0700 when missing; tightened to 0700 when it is ours but looser
    (files planted while it was open are refused one by one when read);
    refused (Untrusted) when another user owns it.
    """
    path = os.fspath(path)
    os.makedirs(path, mode=0o700, exist_ok=True)
    if not CHECKED:
        return
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise Untrusted(f"{path} is not a directory")
    if info.st_uid != os.geteuid():
        raise Untrusted(private_problem(path) or f"{path} is not ours")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


def require_private(path: PathLike) -> None:
    """Refuse (Untrusted) a state file another user owns or can write."""
    problem = private_problem(path)
    if problem:
        raise Untrusted(problem)


def pickle_problem(path: PathLike) -> Optional[str]:
    """Why the pickle at ``path`` must not be loaded, or None. Unpickling
    runs code: a pickle is read only when it and its directory are the
    router's own and private."""
    return private_problem(os.path.dirname(os.fspath(path))) or private_problem(path)


def write_private(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` in a private directory (made so, or
    refused), atomically: a temporary file (0600), then a rename, so a
    reader finds the old file or the new one, never half of one. Raises
    OSError or Untrusted."""
    # Not at import time: the handler's fast path imports this module.
    import contextlib
    import tempfile

    path = os.fspath(path)
    directory, name = os.path.split(path)
    require_private_dir(directory)
    handle, temp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def cache_dir_ok(path: PathLike) -> bool:
    """Whether ``path`` may hold caches: an existing directory that is the
    router user's own and that no one else may even read (the caches hold
    rule text, and some are pickles)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return False
    if not CHECKED:
        return True
    return private_problem(path) is None and not os.stat(path).st_mode & 0o077
