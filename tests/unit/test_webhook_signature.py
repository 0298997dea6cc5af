"""Mercado Pago's x-signature check, against the provider doc's test vector. No database."""

import pytest

from kiosk.validators import format_duration, parse_duration
from kiosk.webhooks.signature import InvalidSignature, header, manifest, sign, verify

SECRET = "test-webhook-secret"
DATA_ID = "ORD01JQ4S4KY8HWQ6NA5PXB65B3D3"
REQUEST_ID = "bb56a2f1-6aae-46ac-982e-9dcd3581d08e"
TS = "1742505638"
V1 = "e08a968ac68d67837f88fc353c2b592e534795b85550346bf08e884afb87290d"
V1_WITHOUT_ID = "777cb0a2136cd2772cf58bf247bfdb68507bbaa2bba013f5d383a5dbe71fc76f"


def test_doc_test_vector():
    assert manifest(DATA_ID, REQUEST_ID, TS) == (
        "id:ORD01JQ4S4KY8HWQ6NA5PXB65B3D3;request-id:bb56a2f1-6aae-46ac-982e-9dcd3581d08e;ts:1742505638;"
    )
    assert sign(SECRET, DATA_ID, REQUEST_ID, TS) == V1
    assert verify(f"ts={TS},v1={V1}", DATA_ID, REQUEST_ID, SECRET, 300, now=int(TS) + 10) == int(TS)


def test_doc_test_vector_without_data_id():
    assert (
        manifest(None, REQUEST_ID, TS)
        == "request-id:bb56a2f1-6aae-46ac-982e-9dcd3581d08e;ts:1742505638;"
    )
    assert sign(SECRET, None, REQUEST_ID, TS) == V1_WITHOUT_ID
    verify(f"ts={TS},v1={V1_WITHOUT_ID}", None, REQUEST_ID, SECRET, 300, now=int(TS))


def test_lowercased_data_id_from_older_senders_is_accepted():
    old = sign(SECRET, DATA_ID.lower(), REQUEST_ID, TS)
    verify(f"ts={TS},v1={old}", DATA_ID, REQUEST_ID, SECRET, 300, now=int(TS))


def test_header_parsing_tolerates_spaces_order_and_case():
    verify(f" v1={V1.upper()} , ts={TS} ", DATA_ID, REQUEST_ID, SECRET, 300, now=int(TS))


@pytest.mark.parametrize(
    ("signature", "data_id", "request_id", "now", "reason"),
    [
        (None, DATA_ID, REQUEST_ID, int(TS), "missing"),
        ("", DATA_ID, REQUEST_ID, int(TS), "missing"),
        (f"ts={TS}", DATA_ID, REQUEST_ID, int(TS), "ts and v1"),
        (f"v1={V1}", DATA_ID, REQUEST_ID, int(TS), "ts and v1"),
        (f"ts=abc,v1={V1}", DATA_ID, REQUEST_ID, int(TS), "unix seconds"),
        (f"ts={TS},v1={'0' * 64}", DATA_ID, REQUEST_ID, int(TS), "does not match"),
        (f"ts={TS},v1={V1}", "ORD0OTHER", REQUEST_ID, int(TS), "does not match"),
        (f"ts={TS},v1={V1}", DATA_ID, "another-request", int(TS), "does not match"),
        (f"ts={int(TS) + 1},v1={V1}", DATA_ID, REQUEST_ID, int(TS), "does not match"),
        (f"ts={TS},v1={V1}", DATA_ID, REQUEST_ID, int(TS) + 301, "outside"),
        (f"ts={TS},v1={V1}", DATA_ID, REQUEST_ID, int(TS) - 301, "outside"),
    ],
)
def test_rejections(signature, data_id, request_id, now, reason):
    with pytest.raises(InvalidSignature, match=reason):
        verify(signature, data_id, request_id, SECRET, 300, now=now)


def test_wrong_secret_is_rejected():
    with pytest.raises(InvalidSignature):
        verify(f"ts={TS},v1={V1}", DATA_ID, REQUEST_ID, "another-secret", 300, now=int(TS))


def test_header_round_trip():
    value = header(SECRET, DATA_ID, REQUEST_ID, ts=int(TS))
    assert value == f"ts={TS},v1={V1}"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT30S", 30), ("PT5M", 300), ("PT1H30M", 5400), ("PT3H", 10800), ("pt2m5s", 125)],
)
def test_iso_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["5M", "PT", "P1D", "PT5X", "", "PT-5M"])
def test_bad_iso_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
