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


@pytest.mark.parametrize(
    "url",
    [
        "json://user:pw@127.0.0.1:8080/hook?+X-Token=abc",
        "form://127.0.0.1:9000/path",
        "mailto://user:pass@127.0.0.1:2525?from=router@example.com&to=a@example.com",
        "ntfy://ntfy.example.com/backups",
        "pagerduty://KEY@ROUTING",
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#backups",
    ],
)
def test_plugin_for_matches_apprise_instantiate(url: str) -> None:
    import apprise

    from router.urls import plugin_for

    ours, theirs = plugin_for(url), apprise.Apprise.instantiate(url)
    assert type(ours) is type(theirs)
    assert ours.url(privacy=False) == theirs.url(privacy=False)


def test_plugin_for_refuses_what_apprise_refuses() -> None:
    from router.urls import plugin_for

    assert plugin_for("nosuchservice://host") is None
    assert plugin_for("slack://") is None


def test_scheme_index_is_kept_only_in_a_private_directory(tmp_path) -> None:
    from router.urls import SchemeIndex

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    for directory, kept in ((shared, False), (private, True)):
        schemes = SchemeIndex()
        schemes.use_cache_dir(directory)
        index = schemes.index()
        assert "json" in index and index["json"].startswith("apprise.plugins.")
        assert bool(list(directory.glob("apprise-*-schemes.json"))) is kept
