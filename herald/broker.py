"""The embedded broker: kombu's filesystem transport with atomic message writes.

kombu's filesystem channel creates the message file and then writes into it, while a consumer in another
process may already move and read it — it then reads an empty file, fails to decode it, and the worker
stops ("Unrecoverable error: JSONDecodeError"). Here a message is written under a name consumers ignore and
renamed into place, so a consumer sees either nothing or the whole message. Used for `herald-fs://` URLs
(the embedded default); production uses Redis.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

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


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> None:
    TRANSPORT_ALIASES.setdefault(SCHEME, "herald.broker:Transport")
