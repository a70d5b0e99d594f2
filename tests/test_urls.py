"""URL masking and recognition: no secret may reach a screen or a log."""

from __future__ import annotations

import pytest

from router.urls import MASK, mask_url, recognise

SECRET_URLS = [
    # (url, secrets that must not appear, what must still show)
    ("json://user:hunter2@localhost:8080/hook", ["hunter2"], "localhost:8080"),
    ("json://localhost/hook?+X-Api-Key=s3cr3t&method=GET", ["s3cr3t"], "method=GET"),
    ("form://localhost/hook?:token=abcdef123", ["abcdef123"], "form://"),
    ("mailto://admin:pa55word@example.com", ["pa55word"], "example.com"),
    ("pagerduty://INTEGRATIONKEY@ROUTINGKEY", ["INTEGRATIONKEY", "ROUTINGKEY"], "pagerduty://"),
    (
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#backups",
        ["A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"],
        "slack://",
    ),
    ("unknownservice://user:topsecret@host/path?key=value1", ["topsecret", "value1"], MASK),
]


@pytest.mark.parametrize(("url", "secrets", "shown"), SECRET_URLS)
def test_mask_hides_every_secret(url: str, secrets: list, shown: str) -> None:
    masked = mask_url(url)
    for secret in secrets:
        assert secret not in masked
    assert shown in masked


def test_mask_of_text_that_is_no_url_shows_nothing() -> None:
    assert mask_url("hunter2") == MASK


@pytest.mark.parametrize(
    "url",
    [
        "json://localhost:8080/hook",
        "form://127.0.0.1:9000/",
        "mailto://backup-admin@example.com",
        "ntfy://ntfy.example.com/backups",
        "pagerduty://KEY@ROUTING",
    ],
)
def test_recognise_accepts_apprise_urls(url: str) -> None:
    assert recognise(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("backup-admin@example.com", "not a URL"),
        ("nosuchservice://x", "no service for 'nosuchservice://'"),
    ],
)
def test_recognise_explains_what_is_wrong(url: str, reason: str) -> None:
    problem = recognise(url)
    assert problem is not None and reason in problem
