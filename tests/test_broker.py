"""The embedded broker survives producers and consumers racing on the same folder."""

from __future__ import annotations

import multiprocessing

from kombu import Connection

from herald import broker

broker.register()


def _options(folder) -> dict:
    return {"data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(folder / "ctl")}


def _produce(folder, worker: int, count: int) -> None:
    with Connection("herald-fs://", transport_options=_options(folder)) as conn:
        queue = conn.SimpleQueue("race")
        for i in range(count):
            queue.put({"worker": worker, "i": i, "padding": "x" * 400_000})
        queue.close()


def test_concurrent_producers_never_hand_a_consumer_a_partial_message(tmp_path):
    (tmp_path / "ctl").mkdir()
    ctx = multiprocessing.get_context("fork")
    producers = [ctx.Process(target=_produce, args=(tmp_path, w, 300)) for w in range(2)]
    for p in producers:
        p.start()
    seen = set()
    with Connection("herald-fs://", transport_options=_options(tmp_path)) as conn:
        queue = conn.SimpleQueue("race")
        while len(seen) < 600:
            message = queue.get(timeout=20)  # raises Empty if messages were lost
            seen.add((message.payload["worker"], message.payload["i"]))
            assert len(message.payload["padding"]) == 400_000
            message.ack()
        queue.close()
    for p in producers:
        p.join(timeout=20)
        assert p.exitcode == 0
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".partial")]


def test_url_scheme_selects_the_atomic_transport():
    with Connection("herald-fs://") as conn:
        assert conn.transport_cls == "herald-fs"
        assert conn.transport.Channel is broker.Channel
