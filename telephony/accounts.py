"""Setting up a telephony account without placing a call: are its credentials accepted, which numbers does it
own (to present as caller ids), and can carriers reach this deployment's public URL for webhooks and audio."""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils.translation import gettext

from campaigns import phones
from herald.logmask import mask_text
from telephony.models import TelephonyAccount
from telephony.providers import get_provider
from telephony.providers.base import ProviderError

log = logging.getLogger(__name__)

PUBLIC_URL_TIMEOUT = 5.0  # seconds for this deployment to fetch its own public URL


@dataclass
class Check:
    ok: bool
    message: str


def check_credentials(account: TelephonyAccount) -> Check:
    """Ask the account's provider whether its credentials work (no call is placed)."""
    try:
        said = get_provider(account).check_account()
    except ProviderError as exc:
        log.info("account %s: credentials check failed: %s", account.pk, mask_text(str(exc)))
        return Check(False, f"{account.name}: {exc}")
    return Check(True, f"{account.name}: {said}")


@dataclass
class ImportedNumbers:
    added: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (number as listed, why)


def import_numbers(account: TelephonyAccount) -> ImportedNumbers:
    """Add the numbers the provider says the account owns to its caller ids (E.164, each once); numbers already
    there stay, in their order. Raises ProviderError when the provider cannot list them."""
    result = ImportedNumbers()
    current = list(account.caller_ids or [])
    for listed in get_provider(account).owned_numbers():
        number, why = phones.parse_phone(listed, None)
        if number is None:
            result.refused.append((listed, why))
            continue
        e164 = phones.e164(number)
        if e164 in current:
            result.already.append(e164)
        else:
            current.append(e164)
            result.added.append(e164)
    if result.added:
        TelephonyAccount.objects.filter(pk=account.pk).update(caller_ids=current)
        account.caller_ids = current
    return result


def public_url_problems(url: str | None = None, *, fetch: bool = True) -> list[Check]:
    """Can carriers reach HERALD_PUBLIC_URL (status callbacks, the audio they fetch)? What the address says,
    then whether this deployment answers there. Only what can be told from here: a firewall in front of it
    shows only when a carrier tries."""
    url = (url or settings.PUBLIC_URL).rstrip("/")
    parts = urlsplit(url)
    host = parts.hostname or ""
    checks: list[Check] = []
    if parts.scheme != "https":
        why = gettext(
            "%(url)s is not https: carriers' webhooks and audio fetches should be encrypted, "
            "and Twilio signs the https address it calls"
        )
        checks.append(Check(False, why % {"url": url}))
    private = _private_host(host)
    if private:
        why = gettext(
            "%(host)s %(why)s: carriers on the internet cannot reach it; set "
            "HERALD_PUBLIC_URL to the address they can (a domain name in front of this server)"
        )
        checks.append(Check(False, why % {"host": host, "why": private}))
    if fetch:
        target = f"{url}/healthz"
        try:
            response = requests.get(target, timeout=PUBLIC_URL_TIMEOUT, allow_redirects=False)
        except requests.RequestException as exc:
            why = gettext("%(target)s did not answer from here: %(error)s")
            checks.append(Check(False, why % {"target": target, "error": type(exc).__name__}))
        else:
            if response.status_code == 200:
                checks.append(
                    Check(True, gettext("%(target)s answers from here (HTTP 200)") % {"target": target})
                )
            else:
                why = gettext("%(target)s answered HTTP %(status)s from here, not 200")
                checks.append(Check(False, why % {"target": target, "status": response.status_code}))
    if not any(not c.ok for c in checks):
        checks.insert(0, Check(True, gettext("%(url)s is a public https address") % {"url": url}))
    return checks


def _private_host(host: str) -> str:
    """Why a host cannot be reached from the internet ('' when it may be)."""
    if not host:
        return gettext("is missing")
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return gettext("is a local name")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return gettext("does not resolve from here")
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_loopback:
            return gettext("is this machine's loopback address (%(ip)s)") % {"ip": ip}
        if ip.is_private or ip.is_link_local or ip.is_reserved:
            return gettext("is a private address (%(ip)s)") % {"ip": ip}
    return ""
