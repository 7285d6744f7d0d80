"""The embedded broker: kombu's filesystem transport with atomic message writes.

kombu's filesystem channel creates the message file and then writes into it, while a consumer in another
process may already move and read it — it then reads an empty file, fails to decode it, and the worker
stops ("Unrecoverable error: JSONDecodeError"). Here a message is written under a name consumers ignore and
renamed into place, so a consumer sees either nothing or the whole message. Used for `herald-fs://` URLs
(the embedded default); production uses Redis.

The exchange tables (which queues an exchange routes to, one small file each) race the same way when several
workers start together: kombu creates the file and then locks and writes it, so a worker binding its queue
meanwhile reads an empty table and stops, and two creators truncate each other's binding. Here the table is
opened without truncating, read, extended and rewritten under one exclusive lock, and an empty table (created,
not yet written) reads as no bindings.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

SCHEME = "herald-fs"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # Consumers only pick names ending in ".<queue>.msg"; the temporary name does not.
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"cannot add message {final!r} to the queue folder") from exc


    def get_table(self, exchange):
        try:
            with self._exchange_file(exchange).open("rb") as fh:
                filesystem.lock(fh, filesystem.LOCK_SH)
                try:
                    raw = bytes_to_str(fh.read())
                finally:
                    filesystem.unlock(fh)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise filesystem.ChannelError(f"cannot read the exchange table of {exchange!r}") from exc
        return [filesystem.exchange_queue_t(*q) for q in (loads(raw) if raw.strip() else [])]

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        path = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            # O_CREAT without O_TRUNC: a table another worker has just written is read, never emptied.
            with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "rb+", buffering=0) as fh:
                filesystem.lock(fh, filesystem.LOCK_EX)
                try:
                    raw = bytes_to_str(fh.read())
                    bindings = [filesystem.exchange_queue_t(*q) for q in (loads(raw) if raw.strip() else [])]
                    if binding not in bindings:
                        bindings.insert(0, binding)
                        fh.seek(0)
                        fh.truncate()
                        fh.write(str_to_bytes(dumps(bindings)))
                finally:
                    filesystem.unlock(fh)
        except OSError as exc:
            raise filesystem.ChannelError(f"cannot write the exchange table of {exchange!r}") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> None:
    TRANSPORT_ALIASES.setdefault(SCHEME, "herald.broker:Transport")
