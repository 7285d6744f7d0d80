"""Dialling limits per telephony account, shared by every telephony worker: calls per second and channels.

Calls per second is a GCRA (a token bucket of depth one) kept in Redis and run as one Lua script on Redis's
own clock, so any number of processes on any number of machines draw from one schedule. A grant is a slot:
slots are at least 1/cps apart, so no one-second window holds more than cps of them (a bucket of depth cps
would let 2 × cps through a window that straddles a refill). A caller that is ready early reserves the next
free slot, if it is at most `wait` away, and sleeps until it; slots are stretched by SPACING_MARGIN so that the
time between a slot and the request actually leaving the worker (the reply, the wake-up) cannot push
cps + 1 requests into one second either.

Channels (concurrent calls) is a semaphore of leases: a sorted set of lease ids scored by expiry, pruned on
every acquisition, so the channels of a worker that died come back when its leases run out. A lease id is
the attempt's (`lease_id(call_id, number)`); the outcome state machine releases it when the attempt reaches
a final status (`call_ended`). A call the carrier holds (Twilio) gets a lease as long as a call can last;
a call that lives in this process (SIP) gets a short one that this process renews until the call ends, so
it dies with the process.

Without Redis (the embedded setup: one machine, filesystem broker) the same two limits live in a small
state file under VAR_DIR/pacing, read and written under an fcntl lock, on the machine's monotonic clock.

If the store cannot be reached, nothing is dialled: the caller gets a "pacing" refusal (logged once).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import redis
from django.conf import settings

from telephony.models import TelephonyAccount

if TYPE_CHECKING:
    from campaigns.models import CallAttempt

log = logging.getLogger(__name__)

DIAL_WAIT = 1.0  # seconds a worker may sleep for its slot before the call goes back to the sweep
SPACING_MARGIN = 0.01  # slots 1% further apart than 1/cps: 10 ms of slack in every one-second window
MIN_CPS = 0.01
LEASE_SECONDS = 60.0  # a call held by this process: renewed every third of this while the process lives
CARRIER_LEASE_SECONDS = 15 * 60.0  # a call the carrier holds: nobody here can renew it; its final status ends it
RETRY_WHEN_DOWN = 5.0  # seconds: the hint given with a refusal when the store cannot be reached
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

# KEYS[1]: the account's theoretical arrival time, microseconds on Redis's clock.
# ARGV: slot spacing (µs), the longest the caller will wait (µs). Returns {1, µs until the slot} or {0, retry in µs}.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local delay = tat - now
if delay > tonumber(ARGV[2]) then return {0, delay - tonumber(ARGV[2])} end
local following = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', following), 'PX', math.ceil((following - now) / 1000) + 1000)
return {1, delay}
"""
# KEYS[1]: the account's leases, a sorted set of lease id -> expiry (µs on Redis's clock).
# ARGV: lease id, channels, lease length (µs). Returns {granted, retry in µs, 1 if the lease is new}.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expiry = string.format('%.0f', now + tonumber(ARGV[3]))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  return {1, 0, 0}
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] == nil then return {0, 1000000, 0} end
  return {0, tonumber(first[2]) - now, 0}
end
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
return {1, 0, 1}
"""
# KEYS[1]: the account's leases. ARGV: lease length (µs), lease ids. Returns 1 for each lease still held (and
# now held longer), 0 for one released or run out: a released lease is never held again by a renewal.
_RENEW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expiry = string.format('%.0f', now + tonumber(ARGV[1]))
local held = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], expiry, ARGV[i])
    held[i - 1] = 1
  else
    held[i - 1] = 0
  end
end
return held
"""
# KEYS[1]: the account's leases. Returns how many are held now.
_COUNT = """
local clock = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(clock[1]) * 1000000 + tonumber(clock[2]))
return redis.call('ZCARD', KEYS[1])
"""


@dataclass(frozen=True)
class Grant:
    """May dial now: a channel is held under `lease_id` and this call's slot has come (after `waited` s)."""

    lease_id: str
    waited: float


@dataclass(frozen=True)
class Refusal:
    """May not dial now: no slot within the wait ("pacing", also when the store is down) or no free channel."""

    reason: Literal["pacing", "channels"]
    retry_in: float


class Unreachable(Exception):
    """The pacing store cannot be reached or read."""


class _Store(Protocol):
    def take(self, account: str, lease: str, channels: int, seconds: float) -> tuple[bool, float, bool]: ...

    def reserve(self, account: str, spacing: float, wait: float) -> tuple[bool, float]: ...

    def renew(self, account: str, leases: list[str], seconds: float) -> list[bool]: ...

    def release(self, account: str, lease: str) -> None: ...

    def in_use(self, account: str) -> int: ...


class RedisStore:
    """Both limits in Redis, on Redis's clock, each step one atomic script."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)
        self._reserve = self.client.register_script(_RESERVE)
        self._take = self.client.register_script(_TAKE)
        self._renew = self.client.register_script(_RENEW)
        self._count = self.client.register_script(_COUNT)

    @staticmethod
    def _key(account: str, what: str) -> str:
        return f"herald:pacing:{account}:{what}"

    def take(self, account: str, lease: str, channels: int, seconds: float) -> tuple[bool, float, bool]:
        with _errors(redis.RedisError):
            granted, retry_us, fresh = self._take(
                keys=[self._key(account, "leases")], args=[lease, channels, round(seconds * 1e6)]
            )
        return bool(granted), retry_us / 1e6, bool(fresh)

    def reserve(self, account: str, spacing: float, wait: float) -> tuple[bool, float]:
        with _errors(redis.RedisError):
            granted, micros = self._reserve(
                keys=[self._key(account, "rate")], args=[round(spacing * 1e6), round(wait * 1e6)]
            )
        return bool(granted), micros / 1e6

    def renew(self, account: str, leases: list[str], seconds: float) -> list[bool]:
        with _errors(redis.RedisError):
            held = self._renew(keys=[self._key(account, "leases")], args=[round(seconds * 1e6), *leases])
        return [bool(h) for h in held]

    def release(self, account: str, lease: str) -> None:
        with _errors(redis.RedisError):
            self.client.zrem(self._key(account, "leases"), lease)

    def in_use(self, account: str) -> int:
        with _errors(redis.RedisError):
            return int(self._count(keys=[self._key(account, "leases")]))


class FileStore:
    """Both limits of every account in one JSON file, changed under an fcntl lock: for processes on one machine.

    Times are the machine's monotonic clock (shared by its processes, immune to wall-clock steps); the boot id
    stored with them makes a file from before a reboot count as empty. An account with no channel held and no
    slot ahead is dropped from the file, which so stays as small as what is in flight.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @contextmanager
    def _state(self, account: str) -> Iterator[dict]:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / "state.lock", "a") as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
                path = self.folder / "state.json"
                try:
                    everything = json.loads(path.read_text(encoding="utf-8"))
                except FileNotFoundError:
                    everything = {}
                except ValueError:
                    log.warning("pacing state %s is unreadable: starting it afresh", path)
                    everything = {}
                if everything.get("boot") != _boot_id():
                    everything = {"boot": _boot_id(), "accounts": {}}
                now = time.monotonic()
                accounts = everything["accounts"]
                state = accounts.setdefault(account, {"tat": 0.0, "leases": {}})
                state["leases"] = {lease: expiry for lease, expiry in state["leases"].items() if expiry > now}
                state["now"] = now
                yield state
                del state["now"]
                everything["accounts"] = {
                    key: kept
                    for key, kept in accounts.items()
                    if kept["tat"] > now or any(expiry > now for expiry in kept["leases"].values())
                }
                scratch = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
                scratch.write_text(json.dumps(everything), encoding="utf-8")
                os.replace(scratch, path)  # a process killed mid-write leaves the old state, never half of one
        except OSError as exc:
            raise Unreachable(f"pacing state under {self.folder}: {exc}") from exc

    def take(self, account: str, lease: str, channels: int, seconds: float) -> tuple[bool, float, bool]:
        with self._state(account) as state:
            leases, now = state["leases"], state["now"]
            fresh = lease not in leases
            if fresh and len(leases) >= channels:
                return False, (min(leases.values()) - now) if leases else 1.0, False
            leases[lease] = now + seconds
            return True, 0.0, fresh

    def reserve(self, account: str, spacing: float, wait: float) -> tuple[bool, float]:
        with self._state(account) as state:
            now = state["now"]
            slot = max(state["tat"], now)
            if slot - now > wait:
                return False, slot - now - wait
            state["tat"] = slot + spacing
            return True, slot - now

    def renew(self, account: str, leases: list[str], seconds: float) -> list[bool]:
        with self._state(account) as state:
            held = [lease in state["leases"] for lease in leases]
            for lease, still in zip(leases, held, strict=True):
                if still:
                    state["leases"][lease] = state["now"] + seconds
            return held

    def release(self, account: str, lease: str) -> None:
        with self._state(account) as state:
            state["leases"].pop(lease, None)

    def in_use(self, account: str) -> int:
        with self._state(account) as state:
            return len(state["leases"])


@contextmanager
def _errors(*kinds: type[Exception]) -> Iterator[None]:
    try:
        yield
    except kinds as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


def store() -> _Store:
    """Redis at settings.PACING_REDIS_URL, or the state file under VAR_DIR/pacing when there is none."""
    where = settings.PACING_REDIS_URL or str(Path(settings.VAR_DIR) / "pacing")
    with _stores_lock:
        if where not in _stores:
            _stores[where] = RedisStore(where) if settings.PACING_REDIS_URL else FileStore(Path(where))
        return _stores[where]


def account_key(account: TelephonyAccount) -> str:
    """The account's name in the store: its id and creation time, since ids come back in a recreated database."""
    return f"{account.pk}-{(account.created_at - _EPOCH) // timedelta(microseconds=1)}"


def lease_id(call_id: int, number: int) -> str:
    """The channel lease of attempt `number` of a call: unique, like the attempt, and known before its row is."""
    return f"{call_id}.{number}"


def slot_spacing(account: TelephonyAccount) -> float:
    """Seconds between two grants for the account."""
    return (1.0 + SPACING_MARGIN) / max(account.calls_per_second, MIN_CPS)


_down = threading.Event()  # set while the store is unreachable: its failure is logged once, not per call


def _unreachable(exc: Unreachable) -> None:
    if not _down.is_set():
        _down.set()
        log.warning("pacing store unreachable, no calls are dialled until it is back: %s", exc)


def _reachable() -> None:
    if _down.is_set():
        _down.clear()
        log.info("pacing store reachable again")


def acquire_dial(
    account: TelephonyAccount, lease: str, *, wait: float = DIAL_WAIT, keep_alive_for: float = 0.0
) -> Grant | Refusal:
    """Take a channel, then wait (up to `wait` s) for this call's slot; on a Grant, dial at once.

    keep_alive_for: the call lives in this process (SIP): its lease is short and renewed by this process for
    at most this many seconds, until `release`/`call_ended`. Otherwise (0) the lease lasts CARRIER_LEASE_SECONDS.
    """
    where, key = store(), account_key(account)
    seconds = LEASE_SECONDS if keep_alive_for else CARRIER_LEASE_SECONDS
    fresh = False
    try:
        taken, retry_in, fresh = where.take(key, lease, account.max_concurrent_calls, seconds)
        if not taken:
            _reachable()
            return Refusal("channels", retry_in)
        granted, delay = where.reserve(key, slot_spacing(account), wait)
    except Unreachable as exc:
        _unreachable(exc)
        if fresh:
            _release_quietly(where, key, lease)
        return Refusal("pacing", RETRY_WHEN_DOWN)
    _reachable()
    if not granted:
        # A lease that was already held belongs to a copy of this task that may be dialling right now.
        if fresh:
            _release_quietly(where, key, lease)
        return Refusal("pacing", delay)
    if keep_alive_for:
        _RENEWER.hold(where, key, lease, keep_alive_for)
    if delay > 0:
        time.sleep(delay)
    return Grant(lease, delay)


def renew(account: TelephonyAccount, lease: str, *, seconds: float = LEASE_SECONDS) -> bool:
    """Hold a channel lease `seconds` more from now; False when it is no longer held (or the store is down)."""
    try:
        (held,) = store().renew(account_key(account), [lease], seconds)
    except Unreachable as exc:
        _unreachable(exc)
        return False
    return held


def release(account: TelephonyAccount, lease: str) -> None:
    """Give a channel back (idempotent, never raises: an unreachable store lets the lease run out instead)."""
    _release_quietly(store(), account_key(account), lease)


def forget(account: TelephonyAccount, lease: str) -> None:
    """Stop renewing a lease here without releasing it: another copy of the task dialled under it."""
    _RENEWER.drop(account_key(account), lease)


def in_use(account: TelephonyAccount) -> int | None:
    """Channels held now for the account; None when the store cannot be reached."""
    try:
        return store().in_use(account_key(account))
    except Unreachable as exc:
        _unreachable(exc)
        return None


def call_ended(attempt: CallAttempt) -> None:
    """The outcome state machine's hook: a final status gives the attempt's channel back. Never raises."""
    try:
        account = (
            TelephonyAccount.objects.filter(campaigns__calls__pk=attempt.call_id).only("pk", "created_at").first()
        )
        if account is not None:
            release(account, lease_id(attempt.call_id, attempt.number))
    except Exception:
        log.exception("attempt %s: cannot give its channel back; the lease will run out", attempt.pk)


def _release_quietly(where: _Store, key: str, lease: str) -> None:
    _RENEWER.drop(key, lease)
    try:
        where.release(key, lease)
    except Unreachable as exc:
        _unreachable(exc)


class _Renewer:
    """Renews the leases of calls that live in this process until they end; it dies with the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], tuple[_Store, float]] = {}  # (account, lease) -> store, deadline
        self._pid = 0

    def hold(self, where: _Store, account: str, lease: str, seconds: float) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use in this process (a forked child has no renewer thread)
                self._held.clear()
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="pacing-renewer", daemon=True).start()
            self._held[(account, lease)] = (where, time.monotonic() + seconds)

    def drop(self, account: str, lease: str) -> None:
        with self._lock:
            self._held.pop((account, lease), None)

    def held(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._held)

    def _run(self) -> None:
        while True:
            time.sleep(LEASE_SECONDS / 3)
            try:
                self.renew_now()
            except Exception:  # the thread must outlive a bug in one round, or every lease would run out
                log.exception("pacing: renewing leases failed")

    def renew_now(self) -> None:
        """One round: every lease this process holds is held LEASE_SECONDS more, unless released meanwhile."""
        now = time.monotonic()
        by_account: dict[tuple[int, str], tuple[_Store, list[str]]] = {}
        with self._lock:
            for (account, lease), (where, deadline) in list(self._held.items()):
                if now > deadline:
                    del self._held[(account, lease)]  # past the longest call: let the lease run out
                else:
                    by_account.setdefault((id(where), account), (where, []))[1].append(lease)
        for (_, account), (where, leases) in by_account.items():
            try:
                held = where.renew(account, leases, LEASE_SECONDS)
            except Unreachable as exc:
                _unreachable(exc)
                return
            for lease, still in zip(leases, held, strict=True):
                if not still:  # released elsewhere (the call ended) or run out: nothing left to renew
                    self.drop(account, lease)


_RENEWER = _Renewer()
