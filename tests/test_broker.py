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


def _bind(folder, worker: int, start, errors) -> None:
    start.wait()
    try:
        with Connection("herald-fs://", transport_options=_options(folder)) as conn:
            channel = conn.default_channel
            for exchange in range(40):  # each one new: every worker races to create its table
                channel._queue_bind(f"ex{exchange}", f"key-{worker}", None, f"q-{worker}")
    except Exception as exc:  # reported to the parent: a failed bind stops a starting worker
        errors.put(f"{type(exc).__name__}: {exc}")


def test_workers_starting_together_bind_their_queues_without_losing_one(tmp_path):
    """kombu's own filesystem transport creates an exchange table and then writes it: a worker binding its queue
    meanwhile read an empty file and stopped (JSONDecodeError), or truncated another's binding."""
    (tmp_path / "ctl").mkdir()
    ctx = multiprocessing.get_context("fork")
    start, errors = ctx.Event(), ctx.Queue()
    binders = [ctx.Process(target=_bind, args=(tmp_path, w, start, errors)) for w in range(6)]
    for p in binders:
        p.start()
    start.set()
    for p in binders:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert errors.empty(), errors.get()
    with Connection("herald-fs://", transport_options=_options(tmp_path)) as conn:
        for exchange in range(40):
            assert {q.queue for q in conn.default_channel.get_table(f"ex{exchange}")} == {f"q-{w}" for w in range(6)}


def test_an_exchange_table_created_but_not_yet_written_reads_as_empty(tmp_path):
    (tmp_path / "ctl").mkdir()
    (tmp_path / "ctl" / "shared.exchange").touch()  # what a concurrent binder sees between create and write
    with Connection("herald-fs://", transport_options=_options(tmp_path)) as conn:
        channel = conn.default_channel
        assert channel.get_table("shared") == []
        channel._queue_bind("shared", "k", None, "q")
        assert [q.queue for q in channel.get_table("shared")] == ["q"]
