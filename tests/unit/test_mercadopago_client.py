"""The Mercado Pago client's error mapping through httpx.MockTransport: nothing sent is
MPNotSent, an answer that may be lost is MPUnavailable (the outcome unknown).
"""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from kiosk.payments import mercadopago as mp


async def test_client_maps_connect_errors_to_not_sent_and_read_errors_to_unknown():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    charge = mp.Charge("kiosk-x", 250, "T", 60, "d")
    for handler, kind in ((refuse, mp.MPNotSent), (drop, mp.MPUnavailable)):
        client = mp.MercadoPago(
            "http://mp.test", SecretStr("t"), 2, transport=httpx.MockTransport(handler)
        )
        async with client:
            with pytest.raises(mp.MPUnavailable) as raised:
                await client.create_order(charge, "k")
        assert type(raised.value) is kind
