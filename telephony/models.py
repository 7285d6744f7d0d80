"""Carrier accounts and the raw events they send us."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from telephony.sip.message import split_host_port
from telephony.sip.types import display_name_problem
from telephony.sip.ua import asserted_identity_problem

_PORT_MESSAGE = gettext_lazy("A port is a number from 1 to 65535.")
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def _is_host(value: str) -> bool:
    """A DNS name, an IPv4 address or an IPv6 address (bare or in brackets)."""
    if _HOST_NAME.fullmatch(value):
        return True
    try:
        ipaddress.IPv6Address(value.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


_SANDBOX_HOSTS = {"127.0.0.1", "localhost", "::1"}


def api_base_url_problem(url: str) -> str | None:
    """Why a Twilio account may not send its token to this REST base URL, or None (blank means Twilio itself).

    https only, and only to a host in HERALD_TWILIO_API_HOSTS; the local sandbox (http or https on this machine)
    only where HERALD_TWILIO_SANDBOX is on."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return gettext("Enter a URL such as https://api.twilio.com.")
    if parts.username or parts.password or parts.query or parts.fragment:
        return gettext("Enter a base URL only: no user@, no query, no fragment.")
    if settings.TWILIO_SANDBOX and host in _SANDBOX_HOSTS and parts.scheme in ("http", "https"):
        return None  # the local sandbox on a demo machine
    if parts.scheme != "https":
        return gettext("Only https URLs: the account's auth token is sent there.")
    if host not in settings.TWILIO_API_HOSTS or port not in (None, 443):
        allowed = ", ".join(settings.TWILIO_API_HOSTS)
        return gettext(
            "%(host)s is not an allowed Twilio API host (HERALD_TWILIO_API_HOSTS: %(allowed)s)."
        ) % {
            "host": host or gettext("This host"),
            "allowed": allowed,
        }
    return None


def parse_backup_hosts(text: str, default_port: int) -> list[tuple[str, int]]:
    """The backup servers field, one `host` or `host:port` ('[v6]:port') per line, blank lines skipped.
    ValidationError naming every bad line by its number."""
    hops: list[tuple[str, int]] = []
    errors = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            host, port = split_host_port(line, default_port)
        except ValueError:
            host, port = "", 0
        if not host or not _is_host(host):
            errors.append(
                gettext("Line %(number)d (%(line)s) is not host or host:port, e.g. sip2.example.com:5060.")
                % {"number": number, "line": line[:80]}
            )
            continue
        hops.append((host, port))
    if errors:
        raise ValidationError(errors)
    return hops


class TelephonyAccount(models.Model):
    class Kind(models.TextChoices):
        TWILIO = "twilio", "Twilio"
        SIP = "sip", gettext_lazy("SIP trunk")

    class Transport(models.TextChoices):
        UDP = "udp", "UDP"
        TCP = "tcp", "TCP"
        TLS = "tls", "TLS"

    class Privacy(models.TextChoices):  # telephony.sip.types.PRIVACY_VALUES
        UNSET = "", gettext_lazy("No Privacy header")
        ID = "id", gettext_lazy("id: withhold the identity")
        NONE = "none", gettext_lazy("none: show the identity")

    name = models.CharField(gettext_lazy("name"), max_length=100, unique=True)
    kind = models.CharField(gettext_lazy("kind"), max_length=10, choices=Kind.choices, default=Kind.TWILIO)
    account_sid = models.CharField(
        gettext_lazy("account sid"),
        max_length=64,
        blank=True,
        help_text=gettext_lazy("Twilio Account SID (or SIP username)"),
    )
    auth_token_env = models.CharField(
        gettext_lazy("auth token env"),
        max_length=100,
        blank=True,
        help_text=gettext_lazy(
            "Name of the environment variable that holds the auth token or SIP password (preferred in production)."
        ),
    )
    auth_token_encrypted = models.TextField(
        gettext_lazy("auth token encrypted"),
        blank=True,
        editable=False,
        help_text=gettext_lazy(
            "Fernet-encrypted auth token or SIP password, when not taken from the environment."
        ),
    )
    api_base_url = models.URLField(
        gettext_lazy("api base url"),
        blank=True,
        help_text=gettext_lazy(
            "Override of the REST API base URL (a local Twilio-compatible sandbox); blank = Twilio."
        ),
    )
    caller_ids = models.JSONField(
        gettext_lazy("caller ids"),
        default=list,
        blank=True,
        help_text=gettext_lazy("E.164 numbers this account may present."),
    )
    calls_per_second = models.FloatField(
        gettext_lazy("calls per second"),
        default=1.0,
        help_text=gettext_lazy("Account-wide dialling rate limit."),
    )
    max_concurrent_calls = models.PositiveIntegerField(gettext_lazy("max concurrent calls"), default=10)
    # SIP trunk: the username is account_sid, the password is the auth token (stored or from the environment).
    sip_host = models.CharField(
        gettext_lazy("sip host"),
        max_length=255,
        blank=True,
        help_text=gettext_lazy("SIP trunk: the carrier's SIP server, a host name or IP address."),
    )
    sip_port = models.PositiveIntegerField(
        gettext_lazy("sip port"),
        default=5060,
        validators=[MinValueValidator(1, _PORT_MESSAGE), MaxValueValidator(65535, _PORT_MESSAGE)],
        help_text=gettext_lazy("SIP trunk: the server's port (5060 for UDP/TCP, usually 5061 for TLS)."),
    )
    sip_transport = models.CharField(
        gettext_lazy("sip transport"), max_length=3, choices=Transport.choices, default=Transport.UDP
    )
    sip_domain = models.CharField(
        gettext_lazy("sip domain"),
        max_length=255,
        blank=True,
        help_text=gettext_lazy(
            "SIP trunk: the domain of our From address (sip:caller-id@domain) when the carrier asks for "
            "one; blank = the SIP server."
        ),
    )
    sip_outbound_proxy = models.CharField(
        gettext_lazy("outbound proxy"),
        max_length=255,
        blank=True,
        help_text=gettext_lazy(
            "SIP trunk: send every request through this proxy (host or host:port); the request URI still names "
            "the SIP server. Blank = straight to the SIP server."
        ),
    )
    sip_request_domain = models.CharField(
        gettext_lazy("request URI domain"),
        max_length=255,
        blank=True,
        help_text=gettext_lazy(
            "SIP trunk: the domain the INVITE's request URI names (sip:+number@domain), when the carrier wants "
            "its domain there rather than the server's address. Blank = the SIP server and port."
        ),
    )
    # More servers of one trunk (telephony.sip.srv): DNS SRV records of the host, backup hosts, and their health.
    sip_srv = models.BooleanField(
        gettext_lazy("look up SRV records"),
        default=False,
        help_text=gettext_lazy(
            "SIP trunk: use the servers the host's DNS SRV records name (_sip._udp, _sip._tcp or _sips._tcp), "
            "by priority and weight, for carriers that publish several servers under one domain. The port "
            "above is used only when the domain has no SRV records."
        ),
    )
    sip_backup_hosts = models.TextField(
        gettext_lazy("backup servers"),
        blank=True,
        help_text=gettext_lazy(
            "SIP trunk: more servers of the same trunk, one per line as host or host:port, tried in order when "
            "the ones before cannot be reached, stay silent, or answer 408 or 5xx before the callee's phone "
            "rings. A call is never tried twice once it rang."
        ),
    )
    sip_health_checks = models.BooleanField(
        gettext_lazy("health checks"),
        default=True,
        help_text=gettext_lazy(
            "SIP trunk: send each server an OPTIONS request every half minute; a server that does not answer "
            "is tried last until it answers again."
        ),
    )
    # Registration trunks (telephony.sip.register): one fixed SIP port for every call, and REGISTER on it.
    sip_local_port = models.PositiveIntegerField(
        gettext_lazy("fixed SIP port"),
        default=0,
        validators=[MaxValueValidator(65535, _PORT_MESSAGE)],
        help_text=gettext_lazy(
            "SIP trunk over UDP: send and listen on this local port for every call (for trunks and firewalls "
            "that know us by one port). 0 = a new port for each call. One telephony worker per host can hold it."
        ),
    )
    sip_register = models.BooleanField(
        gettext_lazy("register"),
        default=False,
        help_text=gettext_lazy(
            "SIP trunk: register with the carrier (REGISTER, refreshed before it runs out) from the fixed SIP "
            "port, for carriers that accept calls only from a registered contact. Needs UDP and a fixed port."
        ),
    )
    sip_registrar = models.CharField(
        gettext_lazy("registrar"),
        max_length=255,
        blank=True,
        help_text=gettext_lazy("SIP trunk: the registrar, host or host:port. Blank = the SIP server."),
    )
    sip_register_expires = models.PositiveIntegerField(
        gettext_lazy("registration lifetime"),
        default=3600,
        validators=[MinValueValidator(60, gettext_lazy("At least 60 seconds.")), MaxValueValidator(86400)],
        help_text=gettext_lazy("SIP trunk: the seconds a registration is asked to last; refreshed before it ends."),
    )
    class Srtp(models.TextChoices):  # telephony.sip.types.SRTP_MODES
        OFF = "", gettext_lazy("Off: plain RTP")
        OPTIONAL = "optional", gettext_lazy("When the trunk requires it")
        REQUIRED = "required", gettext_lazy("Always")

    sip_srtp = models.CharField(
        gettext_lazy("SRTP"),
        max_length=10,
        choices=Srtp.choices,
        blank=True,
        default=Srtp.OFF,
        help_text=gettext_lazy(
            "SIP trunk: encrypt the call's audio (SRTP, AES_CM_128_HMAC_SHA1_80, keys in the SDP). 'When the trunk "
            "requires it' offers plain RTP and switches to SRTP when the trunk refuses it. The keys travel in the "
            "SIP messages: use TLS for them to stay secret."
        ),
    )
    sip_amd = models.BooleanField(
        gettext_lazy("detect answering machines"),
        default=False,
        help_text=gettext_lazy(
            "SIP trunk: listen after the answer for a voicemail greeting, so campaigns can hang up on machines "
            "or leave their voicemail after the beep, as with Twilio. Off: every answer counts as a person."
        ),
    )
    # TLS as the carrier sets it up (telephony.sip.tls): its CA, and our client certificate for mutual TLS.
    sip_tls_ca = models.TextField(
        gettext_lazy("TLS CA certificates"),
        blank=True,
        help_text=gettext_lazy(
            "SIP trunk over TLS: the carrier's CA certificates (PEM) to trust instead of the public ones. "
            "Blank = the system's CAs. The server's name is always checked."
        ),
    )
    sip_tls_client_cert = models.TextField(
        gettext_lazy("TLS client certificate"),
        blank=True,
        help_text=gettext_lazy(
            "SIP trunk over TLS: our certificate (PEM, with its chain) for carriers that admit us by "
            "certificate. Its private key goes in the field below."
        ),
    )
    sip_tls_client_key_encrypted = models.TextField(blank=True, editable=False)
    # SIP trunk caller presentation: the INVITE's From display name, P-Asserted-Identity and Privacy (RFC 3325).
    sip_display_name = models.CharField(
        gettext_lazy("sip display name"),
        max_length=64,
        blank=True,
        help_text=gettext_lazy(
            "SIP trunk: the name shown with the caller ID (From display name), e.g. Acme Deliveries; "
            "sent quoted. Blank = none."
        ),
    )
    sip_asserted_identity = models.CharField(
        gettext_lazy("sip asserted identity"),
        max_length=255,
        blank=True,
        help_text=gettext_lazy(
            "SIP trunk: P-Asserted-Identity, the identity the trunk vouches for, as a sip: or tel: URI "
            "(e.g. tel:+862161234567) when the carrier asks for one. Blank = none."
        ),
    )
    sip_privacy = models.CharField(
        gettext_lazy("sip privacy"),
        max_length=4,
        choices=Privacy.choices,
        blank=True,
        default=Privacy.UNSET,
        help_text=gettext_lazy(
            "SIP trunk: the Privacy header. 'id' asks the carrier to withhold the asserted identity from the "
            "callee; 'none' asks it to pass it on."
        ),
    )
    created_at = models.DateTimeField(gettext_lazy("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = gettext_lazy("telephony account")
        verbose_name_plural = gettext_lazy("telephony accounts")

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def backup_hops(self) -> list[tuple[str, int]]:
        """The backup servers as (host, port); lines saved before validation that cannot be read are left out."""
        hops = []
        for line in self.sip_backup_hosts.splitlines():
            try:
                hops += parse_backup_hosts(line, self.sip_port)
            except ValidationError:
                continue
        return hops

    def clean(self) -> None:
        if self.kind == self.Kind.TWILIO:
            problem = api_base_url_problem(self.api_base_url)
            if problem:
                raise ValidationError({"api_base_url": problem})
        if self.kind != self.Kind.SIP:
            return
        if not self.sip_host:
            raise ValidationError(
                {"sip_host": gettext("A SIP trunk account needs the SIP server's host name or IP address.")}
            )
        problems = {}
        if self.sip_display_name:
            problems["sip_display_name"] = display_name_problem(self.sip_display_name)
        if self.sip_asserted_identity:
            problems["sip_asserted_identity"] = asserted_identity_problem(self.sip_asserted_identity)
        problems = {field: problem for field, problem in problems.items() if problem}
        if problems:
            raise ValidationError(problems)
        if self.sip_register or self.sip_local_port:
            if self.sip_transport != self.Transport.UDP:
                field = "sip_register" if self.sip_register else "sip_local_port"
                raise ValidationError({field: gettext("A fixed SIP port and registration work over UDP only.")})
            if self.sip_register and not self.sip_local_port:
                raise ValidationError(
                    {"sip_local_port": gettext("Registration needs a fixed SIP port: the contact we register.")}
                )
        if self.sip_outbound_proxy:
            try:
                parse_backup_hosts(self.sip_outbound_proxy, self.sip_port)
            except ValidationError:
                raise ValidationError(
                    {"sip_outbound_proxy": gettext("Enter the proxy as host or host:port, e.g. proxy.example.com:5060.")}
                ) from None
        if self.sip_request_domain and not _is_host(self.sip_request_domain):
            raise ValidationError({"sip_request_domain": gettext("Enter a domain only, e.g. ims.example.com.")})
        if self.sip_registrar:
            try:
                parse_backup_hosts(self.sip_registrar, self.sip_port)
            except ValidationError:
                raise ValidationError(
                    {"sip_registrar": gettext("Enter the registrar as host or host:port, e.g. reg.example.com:5060.")}
                ) from None
        if self.sip_backup_hosts:
            try:
                parse_backup_hosts(self.sip_backup_hosts, self.sip_port)
            except ValidationError as exc:
                raise ValidationError({"sip_backup_hosts": exc.messages}) from None
        for field in ("sip_host", "sip_domain"):
            value = getattr(self, field)
            if value and not _is_host(value):
                raise ValidationError(
                    {
                        field: gettext(
                            "Enter a host name or IP address only, e.g. sip.example.com: no sip:, no user@, "
                            "no port (the port has its own field)."
                        )
                    }
                )


class CarrierAnnouncement(models.Model):
    """A carrier's recorded announcement ("您拨打的电话已关机") that SIP calls listen for in early media and just
    after an answer (telephony.sip.announce): what it means decides the call's outcome and its retries."""

    class Outcome(models.TextChoices):  # telephony.sip.announce.OUTCOMES
        INVALID_NUMBER = "invalid_number", gettext_lazy("Invalid number (空号)")
        SUSPENDED = "suspended", gettext_lazy("Suspended (停机)")
        POWERED_OFF = "powered_off", gettext_lazy("Powered off (关机)")
        UNREACHABLE = "unreachable", gettext_lazy("Unreachable (无法接通)")
        BUSY = "busy", gettext_lazy("Busy (正在通话中)")

    name = models.CharField(
        gettext_lazy("name"),
        max_length=80,
        unique=True,
        help_text=gettext_lazy("How calls that match it say so, e.g. china-mobile/powered-off."),
    )
    carrier = models.CharField(gettext_lazy("carrier"), max_length=100, blank=True)
    outcome = models.CharField(gettext_lazy("means"), max_length=20, choices=Outcome.choices)
    audio = models.FileField(
        gettext_lazy("recording"),
        upload_to="announcements/",
        help_text=gettext_lazy(
            "A WAV of the announcement as the carrier plays it (0.8-30 s, mono, any rate; a recording from a "
            "real call is best). Checked on upload."
        ),
    )
    seconds = models.FloatField(gettext_lazy("seconds"), default=0.0, editable=False)
    enabled = models.BooleanField(gettext_lazy("listened for"), default=True)
    created_at = models.DateTimeField(gettext_lazy("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(gettext_lazy("updated at"), auto_now=True)

    class Meta:
        ordering = ["outcome", "name"]
        verbose_name = gettext_lazy("carrier announcement")
        verbose_name_plural = gettext_lazy("carrier announcements")

    def __str__(self) -> str:
        return f"{self.name} ({self.get_outcome_display()})"


class AnnouncementKeyword(models.Model):
    """A phrase a carrier's announcement says, and what it means, for calls where a speech recogniser hears the
    carrier (telephony.sip.keywords): added to the built-in phrases (空号, 停机, 关机, 无法接通, 正在通话中 …)."""

    phrase = models.CharField(
        gettext_lazy("phrase"),
        max_length=60,
        unique=True,
        help_text=gettext_lazy("As the announcement says it, e.g. 已欠费 or not in service; spaces and punctuation ignored."),
    )
    outcome = models.CharField(gettext_lazy("means"), max_length=20, choices=CarrierAnnouncement.Outcome.choices)
    enabled = models.BooleanField(gettext_lazy("listened for"), default=True)

    class Meta:
        ordering = ["outcome", "phrase"]
        verbose_name = gettext_lazy("announcement phrase")
        verbose_name_plural = gettext_lazy("announcement phrases")

    def __str__(self) -> str:
        return f"{self.phrase} ({self.get_outcome_display()})"


class ProviderEvent(models.Model):
    """Every webhook as it arrived, verified or not: facts first, state changes after."""

    class Kind(models.TextChoices):
        STATUS = "status", gettext_lazy("Status")
        GATHER = "gather", gettext_lazy("Gather")

    account = models.ForeignKey(
        TelephonyAccount,
        null=True,
        on_delete=models.SET_NULL,
        related_name="events",
        verbose_name=gettext_lazy("account"),
    )
    attempt = models.ForeignKey(
        "campaigns.CallAttempt",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        verbose_name=gettext_lazy("attempt"),
    )
    kind = models.CharField(gettext_lazy("kind"), max_length=10, choices=Kind.choices)
    provider_call_id = models.CharField(
        gettext_lazy("provider call id"), max_length=64, blank=True, db_index=True
    )
    payload = models.JSONField(gettext_lazy("payload"), default=dict)
    signature_valid = models.BooleanField(gettext_lazy("signature valid"), default=False)
    applied = models.BooleanField(
        gettext_lazy("applied"), default=False, help_text=gettext_lazy("Did this event change the attempt?")
    )
    note = models.CharField(gettext_lazy("note"), max_length=255, blank=True)
    received_at = models.DateTimeField(gettext_lazy("received at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = gettext_lazy("provider event")
        verbose_name_plural = gettext_lazy("provider events")
        ordering = ["received_at", "pk"]
