"""Our Jinja filters and the template analysis router check relies on."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from router.templates import (
    datetime_filter,
    duration_filter,
    environment,
    filesize_filter,
    template_refs,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (90, "1 minute 30 seconds"),
        (7500, "2 hours 5 minutes"),
        (timedelta(hours=2, minutes=5, seconds=9), "2 hours 5 minutes"),
        (timedelta(days=1, hours=3), "1 day 3 hours"),
        (timedelta(minutes=-5), "-5 minutes"),
        ("12x", "12x"),  # a raw string that did not parse is shown as it came
    ],
)
def test_duration_filter(value, text: str) -> None:
    assert duration_filter(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (512, "512 bytes"),
        (1536, "1.5 KB"),
        (20 * 1024**2, "20 MB"),
        (int(1.5 * 1024**3), "1.5 GB"),
        (3 * 1024**4, "3 TB"),
        ("n/a", "n/a"),
    ],
)
def test_filesize_filter(value, text: str) -> None:
    assert filesize_filter(value) == text


def test_datetime_filter_default_and_pattern() -> None:
    moment = datetime(2016, 11, 21, 18, 6)
    assert datetime_filter(moment) == "2016-11-21 18:06"
    assert datetime_filter(moment, "%d.%m.%Y") == "21.11.2016"
    assert datetime_filter("13/45/2016") == "13/45/2016"


def test_event_values_are_data_not_template_source() -> None:
    rendered = environment().from_string("client {{ client }}").render(client="{{ 7*7 }}")
    assert rendered == "client {{ 7*7 }}"


def test_sandbox_blocks_attribute_escapes() -> None:
    from jinja2.exceptions import SecurityError

    template = environment().from_string("{{ x.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        template.render(x="")


def test_refs_list_variables_filters_tests_and_lines() -> None:
    refs = template_refs(
        "{{ script }}\n{% for e in events %}{{ e.client | upper }}{{ loop.index }}{% endfor %}\n"
        "{{ previous.status }} {{ size | filesize }}{% if errors is defined %}{% endif %}"
    )
    assert refs.syntax_error is None
    assert ("script", 1) in refs.variables
    assert ("events", 2) in refs.variables
    names = {name for name, _ in refs.variables}
    assert "e" not in names and "loop" not in names  # bound by the template itself
    assert "errors" not in names  # guarded by `is defined`
    assert ("previous", "status", 3) in refs.attributes
    assert ("upper", 2) in refs.filters and ("filesize", 3) in refs.filters
    assert ("defined", 3) in refs.tests


def test_refs_report_syntax_error_line() -> None:
    refs = template_refs("line one\nline two {{ oops\n")
    assert refs.syntax_error is not None
    assert refs.syntax_error[0] == 2
