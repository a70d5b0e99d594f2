"""Templates: valid Jinja, and every variable, filter and test one the
rule's templates will have (``router/templates.py`` is what renders them)."""

from __future__ import annotations

import re
from typing import Optional

from router.checker.files import REFUSAL_HINT, permission_problem
from router.checker.report import Checking
from router.checker.scope import Variables
from router.language import nodes as n
from router.language.diagnostics import ERROR
from router.suggest import did_you_mean
from router.templates import environment, template_refs


class TemplateChecker:
    def __init__(self, checking: Checking) -> None:
        self.checking = checking

    def check(self, template: n.Template, variables: Variables) -> None:
        source, location = self.source(template)
        if source is None:
            return
        refs = template_refs(source)
        if refs.syntax_error is not None:
            line, message = refs.syntax_error
            span = location.span_for(line, None)
            self.checking.report(span, ERROR, "template-syntax", f"template: {message}")
            return
        env = environment()
        for name, line in refs.variables:
            self.check_variable(name, location.span_for(line, name), variables)
        for base, attr, line in refs.attributes:
            if base == "previous" and variables.scope.lookup(attr) is None:
                self.checking.error(
                    location.span_for(line, f"previous.{attr}"),
                    "unknown-variable",
                    f"unknown field 'previous.{attr}'"
                    + did_you_mean(attr, variables.scope.all_fields),
                )
        for kind, names, known in (
            ("filter", refs.filters, env.filters),
            ("test", refs.tests, env.tests),
        ):
            for name, line in names:
                if name not in known:
                    self.checking.error(
                        location.span_for(line, name),
                        f"unknown-{kind}",
                        f"unknown {kind} '{name}'" + did_you_mean(name, known),
                    )

    def check_variable(self, name: str, span: n.Span, variables: Variables) -> None:
        if name in variables.extra:
            return
        info = variables.scope.lookup(name)
        if info is not None and variables.fields_visible:
            if info.missing_in:
                self.checking.warning(
                    span,
                    "missing-variable",
                    f"{', '.join(info.missing_in)} has no field '{name}'; it renders empty there",
                )
            return
        if info is not None:
            self.checking.error(
                span,
                "unknown-variable",
                f"expect templates cannot see '{name}': no event is at hand when one fires",
                "use last.FIELD, or pin the field in where with ==",
            )
            return
        candidates = set(variables.extra)
        if variables.fields_visible:
            candidates |= set(variables.scope.all_fields)
        self.checking.error(
            span,
            "unknown-variable",
            f"unknown variable '{name}'" + did_you_mean(name, candidates),
            f"the rule's templates see the fields of {variables.scope.describe()}",
        )

    def source(self, template: n.Template) -> tuple[Optional[str], TemplateLocation]:
        """The template's text and how its lines map to a file; a ``file``
        template is read here (and kept for the engine)."""
        result = self.checking.result
        inline = TemplateLocation(template, result.sources)
        if template.path is None:
            return template.source, inline
        path = self.checking.base_dir / template.path
        refused = permission_problem(path)
        if refused:
            self.checking.error(
                template.span, "insecure-permissions", f"refused: {refused}", REFUSAL_HINT
            )
            return None, inline
        try:
            text = path.read_text(encoding="utf-8-sig")  # without a Windows BOM
        except (OSError, UnicodeDecodeError) as exc:
            reason = "not found" if isinstance(exc, FileNotFoundError) else str(exc)
            self.checking.error(
                template.span,
                "template-file",
                f"template file '{template.path}': {reason}",
                "template files are relative to the rule file",
            )
            return None, inline
        result.template_files[template] = text
        result.sources[str(path)] = text.splitlines()
        return text, TemplateLocation(template, result.sources, str(path))


class TemplateLocation:
    """Maps a line inside a template to a span in the file that holds it."""

    def __init__(
        self, template: n.Template, sources: dict[str, list[str]], path: Optional[str] = None
    ) -> None:
        self.template = template
        self.sources = sources
        self.path = path  # set for `file` templates: lines are that file's own

    def span_for(self, line: int, needle: Optional[str]) -> n.Span:
        span = self.template.span
        if self.path is not None:
            file, file_line, start = self.path, line, 0
        else:
            file, file_line = span.file, max(self.template.first_line, span.line) + line - 1
            start = span.column - 1 if file_line == span.line else 0
        text = self.sources.get(file, [])
        source_line = text[file_line - 1] if 0 < file_line <= len(text) else ""
        if needle:
            match = re.compile(rf"(?<![\w.]){re.escape(needle)}(?!\w)").search(source_line, start)
            if match:
                return n.Span(file, file_line, match.start() + 1, file_line, match.end() + 1)
        if self.path is None and file_line == span.line:
            return span
        indent = len(source_line) - len(source_line.lstrip())
        return n.Span(file, file_line, indent + 1, file_line, max(len(source_line), indent) + 1)
