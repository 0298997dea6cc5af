"""The SSRF guard refuses internal targets unless allow-listed."""

import pytest

from kiosk.netguard import UnsafeURL, check_url, parse_allow_list

NONE = frozenset()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8080/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
    ],
)
async def test_internal_targets_are_refused(url):
    with pytest.raises(UnsafeURL, match="internal address"):
        await check_url(url, NONE)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "only http"),
        ("http:///nohost", "no host"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com:99999/", "malformed"),
        ("http://no-such-host.invalid/", "cannot resolve"),
    ],
)
async def test_bad_urls_are_refused(url, reason):
    with pytest.raises(UnsafeURL, match=reason):
        await check_url(url, NONE)


async def test_public_literal_address_is_allowed():
    assert [str(a) for a in await check_url("https://8.8.8.8/", NONE)] == ["8.8.8.8"]


async def test_allow_list_by_host_address_and_network():
    assert await check_url("http://localhost:9/", parse_allow_list("localhost"))
    assert await check_url("http://127.0.0.1:9/", parse_allow_list("127.0.0.1"))
    assert await check_url("http://10.9.8.7/", parse_allow_list("10.0.0.0/8, example.com"))
    with pytest.raises(UnsafeURL):
        await check_url("http://10.9.8.7/", parse_allow_list("10.1.0.0/16"))


def test_bad_allow_list_entry_is_rejected():
    with pytest.raises(ValueError, match="not a valid network"):
        parse_allow_list("10.0.0.0/33")
