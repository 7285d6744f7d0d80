"""A trunk checked with OPTIONS, no call placed (issue 21's Test credentials for SIP trunks): against a real sipp
UAS that challenges with a digest and verifies the answer itself (sipp's verifyauth)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from telephony.accounts import check_credentials
from telephony.actions import set_auth_token
from telephony.models import TelephonyAccount
from telephony.sip import options
from tests.sipp import Sipp

PASSWORD = "s3cret-digest"  # what options_auth.xml verifies, for user herald


def ping(uas: Sipp, password: str, **kwargs) -> options.OptionsAnswer:
    return asyncio.run(options.ping(host=uas.host, port=uas.port, transport=uas.transport, username="herald",
                                    password=password, **kwargs))  # fmt: skip


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_the_trunk_accepts_the_digest_answer(transport):
    with Sipp("options_auth.xml", transport=transport) as uas:
        answer = ping(uas, PASSWORD)
        assert uas.wait(10) == 0, uas.report()  # sipp verified the Authorization itself
    assert answer == options.OptionsAnswer(200, "OK", challenged=True)


def test_a_wrong_password_is_refused():
    with Sipp("options_auth.xml") as uas:
        answer = ping(uas, "wrong")
        assert uas.wait(10) != 0  # the scenario's own error: the Authorization did not verify
    assert answer == options.OptionsAnswer(403, "Forbidden", challenged=True)


def test_a_silent_trunk_is_no_answer_by_the_deadline():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never read: datagrams vanish
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        answer = asyncio.run(options.ping(host="127.0.0.1", port=port, transport="udp", timeout=1.0, t1=0.1))
    assert answer == options.OptionsAnswer(0, "no answer", challenged=False)


def test_a_closed_tcp_port_says_it_cannot_connect():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(options.TransportError, match=f"cannot connect to 127.0.0.1:{port} over tcp"):
        asyncio.run(options.ping(host="127.0.0.1", port=port, transport="tcp", timeout=2.0))


@pytest.mark.django_db
@pytest.mark.parametrize(("password", "ok", "said"), [
    (PASSWORD, True, "answered OPTIONS (200 OK) and accepted the username and password"),
    ("wrong", False, "refused the username and password (403 Forbidden)"),
])  # fmt: skip
def test_test_credentials_of_a_sip_trunk(password, ok, said):
    with Sipp("options_auth.xml") as uas:
        trunk = TelephonyAccount.objects.create(
            name="trunk", kind=TelephonyAccount.Kind.SIP, account_sid="herald", sip_host=uas.host,
            sip_port=uas.port, sip_transport="udp",
        )  # fmt: skip
        set_auth_token(trunk, password)
        result = check_credentials(trunk)
        uas.wait(10)
    assert result.ok is ok and said in result.message, result.message
    assert password not in result.message
