"""Problems found in rule files, and how they are shown.

One record type serves the parser, the checker and ``router check``'s two
output formats, so a problem reads the same wherever it comes from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Optional

from router.language.nodes import Span

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One problem at one place. Lines and columns are 1-based; the end is exclusive."""

    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    severity: str
    code: str
    message: str
    hint: Optional[str] = None

    @classmethod
    def at(
        cls, span: Span, severity: str, code: str, message: str, hint: Optional[str] = None
    ) -> Diagnostic:
        return cls(
            span.file,
            span.line,
            span.column,
            span.end_line,
            span.end_column,
            severity,
            code,
            message,
            hint,
        )

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def sort_key(self) -> tuple:
        return (self.path, self.line, self.column, self.code)

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        end_line, end_column = data.pop("end_line"), data.pop("end_column")
        data["end"] = {"line": end_line, "column": end_column}
        return data


def format_text(diag: Diagnostic, lines: Optional[Sequence[str]]) -> str:
    """The compiler-style form: ``path:line:col: severity: message``, the
    source line, a caret under the span, then the hint."""
    head = f"{diag.path}:{diag.line}:{diag.column}: {diag.severity}: {diag.message}"
    out = [head]
    if lines is not None and 1 <= diag.line <= len(lines):
        source = lines[diag.line - 1].rstrip("\n").expandtabs(1)
        start = max(diag.column - 1, 0)
        end = diag.end_column - 1 if diag.end_line == diag.line else len(source)
        source, start, end = mask_source_line(source, start, end)
        width = max(end - start, 1)
        out.append(f"    {source}")
        out.append("    " + " " * start + "^" + "~" * (width - 1))
    if diag.hint:
        out.append(f"    hint: {diag.hint}")
    return "\n".join(out)


_URL_IN_LINE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"]*")


def mask_source_line(source: str, start: int, end: int) -> tuple[str, int, int]:
    """``source`` with every URL in it masked (a target's line holds its
    URL, password and all), and the 0-based span ``start:end`` moved to
    stay under the same text."""
    matches = list(_URL_IN_LINE.finditer(source))
    if not matches:
        return source, start, end
    from router.urls import hides_secret, mask_url

    pieces: list[str] = []
    new_start, new_end, shift, last = start, end, 0, 0
    for match in matches:
        url = match.group(0)
        if not hides_secret(url):
            continue  # shown as written: nothing in it is secret
        masked = mask_url(url)
        a, b = match.span()
        pieces.append(source[last:a] + masked)
        last = b
        delta = len(masked) - len(url)
        # A position inside the URL keeps to the masked URL's extent.
        if start >= b:
            new_start += delta
        elif start > a:
            new_start = a + shift + min(start - a, len(masked))
        if end >= b:
            new_end += delta
        elif end > a:
            new_end = a + shift + min(end - a, len(masked))
        shift += delta
    pieces.append(source[last:])
    return "".join(pieces), new_start, max(new_end, new_start)


def render_text(diagnostics: Iterable[Diagnostic], sources: dict[str, list[str]]) -> str:
    return "\n".join(format_text(d, sources.get(d.path)) for d in diagnostics)


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.as_json() for d in diagnostics], indent=2)
