"""The handler's arguments as Retrospect for Windows passes them.

No imports: the handler's fast path reads its arguments through this on
Windows, for every event. ``router.events`` exposes the same functions.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Optional


def split_command_line(text: str) -> list[str]:
    """Split a Windows command line the way Retrospect writes it.

    Retrospect for Windows wraps every argument in double quotes and does not
    escape backslashes, so a drive root arrives as ``"C:\\"``. The C runtime's
    rules (which Python's sys.argv follows) read ``\\"`` as a literal quote and
    shift every later argument; here a quoted part ends at the next double
    quote and a backslash is an ordinary character, as Retrospect's own C
    sample splits it. Unquoted parts (the program's path, say) end at a space
    or tab; ``""`` is an empty argument.
    """
    args: list[str] = []
    index, length = 0, len(text)
    while index < length:
        while index < length and text[index] in " \t":
            index += 1
        if index >= length:
            break
        parts: list[str] = []
        while index < length and text[index] not in " \t":
            if text[index] == '"':
                end = text.find('"', index + 1)
                end = length if end < 0 else end
                parts.append(text[index + 1 : end])
                index = end + 1
            else:
                start = index
                while index < length and text[index] not in ' \t"':
                    index += 1
                parts.append(text[start:index])
        args.append("".join(parts))
    return args


def _program_stem(path: str) -> str:
    name = path.replace("/", "\\").rsplit("\\", 1)[-1].lower()
    for suffix in (".exe", "-script.pyw", "-script.py", ".pyw", ".py"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def arguments_after_program(command_line: str, program: str) -> Optional[list[str]]:
    """The event's arguments in a raw Windows command line: the tokens after
    the one naming ``program`` (the handler: its path, as sys.argv[0] has it).
    The interpreter and launcher paths before it are ordinary quoted paths,
    on which both splitting rules agree. None when ``program`` is not found
    (the caller then keeps sys.argv)."""
    tokens = split_command_line(command_line)
    stem = _program_stem(program)
    for index, token in enumerate(tokens):
        if token and _program_stem(token) == stem:
            return tokens[index + 1 :]
    return None


def command_line_args(argv: list[str]) -> list[str]:
    """The event's arguments: ``argv[1:]``, except on Windows, where the raw
    command line is split as Retrospect writes it (see split_command_line)."""
    import os

    if os.name != "nt":
        return argv[1:]
    try:  # pragma: no cover - Windows
        import ctypes

        get = ctypes.windll.kernel32.GetCommandLineW  # type: ignore[attr-defined]
        get.restype = ctypes.c_wchar_p
        found = arguments_after_program(get() or "", argv[0] if argv else "")
    except Exception:
        found = None
    return argv[1:] if found is None else found
