"""JSON for the handler's fast path, without the json package.

``import json`` pulls in re and enum, which cost more than everything else
the fast path does. The C accelerator json itself uses (_json) reads and
writes the same JSON; without it (another Python implementation), the json
package does.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

try:
    import _json

    class _ScanContext:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = float  # NaN, Infinity, -Infinity, as json reads them

    _scan = _json.make_scanner(_ScanContext())
    _quote = _json.encode_basestring_ascii
except (ImportError, AttributeError):  # pragma: no cover - not CPython
    _scan = _quote = None

_WHITESPACE = " \t\n\r"


def dumps(value: Any) -> str:
    """JSON text for plain data, as ``json.dumps`` writes it (ASCII-only,
    so undecodable argv bytes travel as escaped surrogates)."""
    if _quote is None:  # pragma: no cover
        import json

        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not JSON")
        return float.__repr__(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(_quote(str(k)) + ":" + dumps(v) for k, v in value.items()) + "}"
    raise TypeError(f"{type(value).__name__} is not JSON")


def loads(text: str) -> Any:
    """The value of a JSON text, as ``json.loads`` reads it (ValueError if malformed)."""
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError("extra data after the JSON value")
    return value
