"""SRTP and SRTCP (RFC 3711) with SDES keys (RFC 4568), suite AES_CM_128_HMAC_SHA1_80: what trunks that encrypt
media offer or require.

Each direction has its own master key and salt: ours goes in our SDP's a=crypto line, the far end's comes in its
answer. Session keys are derived once (key derivation rate 0) with AES in counter mode; each RTP payload is
encrypted with AES-CM (IV from the session salt, the SSRC and the 48-bit packet index) and the header plus the
encrypted payload plus the rollover counter is authenticated with HMAC-SHA1, cut to 80 bits. RTCP is encrypted
after its first 8 bytes and carries its own 31-bit index with the E flag. The receiver estimates each packet's
index from its sequence number (RFC 3711 3.3.1), refuses a packet whose tag does not verify, and refuses
replays (a 64-packet window). The AES comes from `cryptography`; the protocol is ours. Checked both ways against
libsrtp itself in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SUITE = "AES_CM_128_HMAC_SHA1_80"
KEY_LEN, SALT_LEN, AUTH_KEY_LEN, TAG_LEN = 16, 14, 20, 10
REPLAY_WINDOW = 64
LABELS = {"rtp_key": 0, "rtp_auth": 1, "rtp_salt": 2, "rtcp_key": 3, "rtcp_auth": 4, "rtcp_salt": 5}


class SrtpError(ValueError):
    """Keys or an SDES line that cannot be used; the message says why."""


@dataclass(frozen=True)
class MasterKey:
    key: bytes  # 16 bytes
    salt: bytes  # 14 bytes

    @classmethod
    def random(cls) -> MasterKey:
        material = os.urandom(KEY_LEN + SALT_LEN)
        return cls(material[:KEY_LEN], material[KEY_LEN:])

    def inline(self) -> str:
        """The key as an SDES `inline:` parameter (base64 of key || salt)."""
        return "inline:" + base64.b64encode(self.key + self.salt).decode()

    def __repr__(self) -> str:  # never the key itself
        return "MasterKey(...)"


def crypto_attribute(tag: int, key: MasterKey) -> str:
    """Our SDP line (without "a="): `crypto:1 AES_CM_128_HMAC_SHA1_80 inline:...`."""
    return f"crypto:{tag} {SUITE} {key.inline()}"


def parse_crypto(value: str) -> tuple[int, str, MasterKey | None]:
    """An a=crypto value: (tag, suite, key) — key None when the suite is not ours (the line is skipped)."""
    fields = value.split()
    if len(fields) < 3 or not fields[0].isdigit():
        raise SrtpError(f"malformed a=crypto line {value[:80]!r}")
    tag, suite = int(fields[0]), fields[1]
    if suite != SUITE:
        return tag, suite, None
    params = fields[2]
    if not params.startswith("inline:"):
        raise SrtpError(f"a=crypto {tag}: only inline keys are supported, got {params[:20]!r}")
    encoded = params[len("inline:") :].split("|")  # key||salt, then optional lifetime and MKI
    if len(encoded) > 1:
        raise SrtpError(f"a=crypto {tag}: key lifetimes and MKIs are not supported")
    try:
        material = base64.b64decode(encoded[0] + "=" * (-len(encoded[0]) % 4), validate=True)
    except ValueError:
        raise SrtpError(f"a=crypto {tag}: the key is not base64") from None
    if len(material) != KEY_LEN + SALT_LEN:
        raise SrtpError(f"a=crypto {tag}: the key and salt are {len(material)} bytes, not {KEY_LEN + SALT_LEN}")
    return tag, suite, MasterKey(material[:KEY_LEN], material[KEY_LEN:])


def derive(master: MasterKey, label: int, length: int) -> bytes:
    """A session key (RFC 3711 4.3.1, key derivation rate 0): AES-CM over x = master salt XOR (label at octet 7)."""
    x = bytearray(master.salt)
    x[7] ^= label
    return _keystream(master.key, bytes(x) + b"\0\0", length)


def _keystream(key: bytes, iv: bytes, length: int) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(b"\0" * length) + encryptor.finalize()


def _iv(salt: bytes, ssrc: int, index: int) -> bytes:
    """(salt << 16) XOR (SSRC << 64) XOR (index << 16), as 16 bytes (RFC 3711 4.1.1)."""
    value = (int.from_bytes(salt, "big") << 16) ^ (ssrc << 64) ^ (index << 16)
    return value.to_bytes(16, "big")


def _header_length(packet: bytes) -> int:
    if len(packet) < 12 or packet[0] >> 6 != 2:
        raise SrtpError("not an RTP packet")
    length = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:  # a header extension: 4 bytes, then its length in 32-bit words
        if len(packet) < length + 4:
            raise SrtpError("the RTP header extension is cut short")
        length += 4 + 4 * struct.unpack_from("!H", packet, length + 2)[0]
    if len(packet) < length:
        raise SrtpError("the RTP header is cut short")
    return length


class _Keys:
    def __init__(self, master: MasterKey, prefix: str) -> None:
        self.key = derive(master, LABELS[f"{prefix}_key"], KEY_LEN)
        self.auth = derive(master, LABELS[f"{prefix}_auth"], AUTH_KEY_LEN)
        self.salt = derive(master, LABELS[f"{prefix}_salt"], SALT_LEN)
        self.algorithm = algorithms.AES(self.key)

    def crypt(self, ssrc: int, index: int, data: bytes) -> bytes:
        encryptor = Cipher(self.algorithm, modes.CTR(_iv(self.salt, ssrc, index))).encryptor()
        return encryptor.update(data) + encryptor.finalize()

    def tag(self, data: bytes) -> bytes:
        return hmac.new(self.auth, data, hashlib.sha1).digest()[:TAG_LEN]


class _Replay:
    """The highest index seen and a bitmask of the REPLAY_WINDOW before it."""

    def __init__(self) -> None:
        self.top = -1
        self.mask = 0

    def fresh(self, index: int) -> bool:
        if index > self.top:
            return True
        behind = self.top - index
        return behind < REPLAY_WINDOW and not (self.mask >> behind) & 1

    def seen(self, index: int) -> None:
        if index > self.top:
            shift = index - self.top
            self.mask = ((self.mask << shift) | 1) & ((1 << REPLAY_WINDOW) - 1) if self.top >= 0 else 1
            self.top = index
        else:
            self.mask |= 1 << (self.top - index)


class Sender:
    """Protects what we send with our master key."""

    def __init__(self, master: MasterKey) -> None:
        self.rtp = _Keys(master, "rtp")
        self.rtcp = _Keys(master, "rtcp")
        self.roc = 0
        self.last_seq: int | None = None
        self.rtcp_index = 0

    def protect(self, packet: bytes) -> bytes:
        header = _header_length(packet)
        seq, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
        if self.last_seq is not None and seq < self.last_seq and self.last_seq - seq > 0x8000:
            self.roc = (self.roc + 1) & 0xFFFFFFFF  # the sequence number wrapped
        self.last_seq = seq
        index = (self.roc << 16) | seq
        body = packet[:header] + self.rtp.crypt(ssrc, index, packet[header:])
        return body + self.rtp.tag(body + struct.pack("!I", self.roc))

    def protect_rtcp(self, packet: bytes) -> bytes:
        if len(packet) < 8:
            raise SrtpError("an RTCP packet is at least 8 bytes")
        ssrc = struct.unpack_from("!I", packet, 4)[0]
        index = self.rtcp_index
        self.rtcp_index = (self.rtcp_index + 1) & 0x7FFFFFFF
        body = packet[:8] + self.rtcp.crypt(ssrc, index, packet[8:]) + struct.pack("!I", 0x80000000 | index)
        return body + self.rtcp.tag(body)


class Receiver:
    """Checks and decrypts what the far end sends with its master key; None for a packet to drop."""

    def __init__(self, master: MasterKey) -> None:
        self.rtp = _Keys(master, "rtp")
        self.rtcp = _Keys(master, "rtcp")
        self.roc = 0
        self.s_l: int | None = None  # the highest sequence number authenticated
        self.replay = _Replay()
        self.rtcp_replay = _Replay()
        self.rejected = 0

    def _guess_roc(self, seq: int) -> int:
        """RFC 3711 3.3.1: the rollover counter this sequence number most likely belongs to."""
        if self.s_l is None:
            return self.roc
        if self.s_l < 0x8000:
            return self.roc - 1 if seq - self.s_l > 0x8000 and self.roc > 0 else self.roc
        return self.roc + 1 if self.s_l - 0x8000 > seq else self.roc

    def unprotect(self, packet: bytes) -> bytes | None:
        try:
            header = _header_length(packet[:-TAG_LEN])
        except SrtpError:
            self.rejected += 1
            return None
        if len(packet) < header + TAG_LEN:
            self.rejected += 1
            return None
        body, tag = packet[:-TAG_LEN], packet[-TAG_LEN:]
        seq, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
        roc = self._guess_roc(seq) & 0xFFFFFFFF
        index = (roc << 16) | seq
        if not self.replay.fresh(index) or not hmac.compare_digest(tag, self.rtp.tag(body + struct.pack("!I", roc))):
            self.rejected += 1
            return None
        self.replay.seen(index)
        if roc > self.roc or self.s_l is None or (roc == self.roc and seq > self.s_l):
            self.roc, self.s_l = roc, seq
        return body[:header] + self.rtp.crypt(ssrc, index, body[header:])

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        if len(packet) < 8 + 4 + TAG_LEN:
            self.rejected += 1
            return None
        body, tag = packet[:-TAG_LEN], packet[-TAG_LEN:]
        if not hmac.compare_digest(tag, self.rtcp.tag(body)):
            self.rejected += 1
            return None
        word = struct.unpack_from("!I", body, len(body) - 4)[0]
        index, encrypted = word & 0x7FFFFFFF, bool(word >> 31)
        if not self.rtcp_replay.fresh(index):
            self.rejected += 1
            return None
        self.rtcp_replay.seen(index)
        ssrc = struct.unpack_from("!I", body, 4)[0]
        payload = body[8:-4]
        return body[:8] + (self.rtcp.crypt(ssrc, index, payload) if encrypted else payload)
