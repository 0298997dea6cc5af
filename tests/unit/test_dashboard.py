"""The dashboard's pure parts: the signed session cookie and the job filter form (the pages
over HTTP are in tests/integration/test_dashboard.py).
"""

import datetime as dt

from kiosk.dashboard import session
from tests.support.config import ADMIN_TOKEN


def test_session_cookie_signature_and_rotation():
    key = session.signing_key(ADMIN_TOKEN)
    session_id, cookie = session.new_cookie(key)
    assert session.cookie_id(key, cookie) == session_id and len(session_id) >= 43  # 32 random bytes
    assert session.cookie_id(session.signing_key(ADMIN_TOKEN + "-rotated"), cookie) is None
    other_id, _ = session.new_cookie(key)
    signature = cookie.rsplit(".", 1)[1]
    assert session.cookie_id(key, f"{other_id}.{signature}") is None  # another id, this signature
    assert session.cookie_id(key, "garbage") is None and session.cookie_id(key, "a.b.c") is None
    assert (
        session.cookie_id(key, None) is None
        and session.cookie_id(key, "x" * 300 + "." + signature) is None
    )
    sess = session.Session(session_id, "ana", 0)
    assert session.csrf_ok(key, sess, session.csrf_token(key, sess))
    assert not session.csrf_ok(key, sess, None) and not session.csrf_ok(key, sess, "x")
    other = session.Session(other_id, "ana", 0)
    assert session.csrf_token(key, other) != session.csrf_token(key, sess)  # per sign-in
    assert session.token_fingerprint(ADMIN_TOKEN) != session.token_fingerprint(
        ADMIN_TOKEN + "-rotated"
    )
    assert session.cookie_secure("http", "127.0.0.1", force=False) is False
    assert session.cookie_secure("http", "::1", force=False) is False
    assert session.cookie_secure("http", "192.0.2.7", force=False) is True
    assert session.cookie_secure("https", "127.0.0.1", force=False) is True
    assert session.cookie_secure("http", "127.0.0.1", force=True) is True


def test_time_filter_round_trips():
    from kiosk.dashboard import forms

    flt, errors = forms.parse_filter(
        {"deferred_after": "2026-11-25T15:09", "min_attempts": "1", "status": "failed"}
    )
    assert not errors and flt.deferred_after == dt.datetime(2026, 11, 25, 15, 9, tzinfo=dt.UTC)
    assert forms.parse_filter(forms.filter_params(flt))[0] == flt
