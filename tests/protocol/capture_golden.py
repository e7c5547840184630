"""Recapture the golden frames of tests/protocol/golden/ from real Kafka clients.

Run by hand: ``.venv/bin/python tests/protocol/capture_golden.py`` regenerates every
file under ``golden/`` (the test suite only reads them). For each client it starts our
broker (``python -m broker serve`` on 127.0.0.1 port 0, advertising the proxy's port so
that Metadata sends the client back through the proxy), puts a recording TCP proxy in
front of it and runs one flow: create a topic (admin client where the client has one),
produce three records with a key and a header (gzip), consume them in a consumer group
(kafkajs/kcat/kafka-python/aiokafka/confluent-kafka all have one) and commit offsets.

The proxy forwards bytes untouched and, per connection, splits both directions into
size-prefixed frames, pairing each response with its request by correlation id. Frames
are stored as on the wire (size prefix included), at most :data:`PER_VERSION` distinct
exchanges per (API, version) per client, in ``<client>-<version>/<api>_v<N>_<seq>.bin``
with ``<api>_v<N>_<seq>.response.bin`` beside it; ``index.json`` lists them in the order
the client sent them.
"""

from __future__ import annotations

import asyncio
import json
import re
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `protocol` importable
    sys.path.insert(0, str(ROOT))

from protocol.codec import request_class  # noqa: E402

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
JS_FLOW = HERE / "golden_js" / "flow.js"
JS_MODULES = ROOT / "tests" / "js" / "node_modules"
KCAT = "/usr/bin/kcat"
TOPIC = "golden"
GROUP = "golden-group"
PER_VERSION = 3
READY_TIMEOUT_S = 20.0
FLOW_TIMEOUT_S = 90.0
# values compress well: librdkafka sends a batch uncompressed when gzip does not shrink it
RECORDS = [(b"key-%d" % i, b"value-%d-" % i + b"golden" * 8) for i in range(3)]
HEADER = ("h", b"v")


@dataclass(slots=True)
class Exchange:
    """One request frame (size prefix included) and the response frame to it."""

    connection: int
    api_key: int
    api_version: int
    correlation_id: int
    request: bytes
    response: bytes | None = None


@dataclass(slots=True)
class Recorder:
    """Every exchange seen by a proxy, in the order the requests were sent."""

    exchanges: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _split_frames(buf: bytearray) -> list[bytes]:
    """Remove and return the complete size-prefixed frames at the start of ``buf``."""
    frames = []
    while len(buf) >= 4:
        (size,) = struct.unpack_from(">i", buf, 0)
        if len(buf) < 4 + size:
            break
        frames.append(bytes(buf[: 4 + size]))
        del buf[: 4 + size]
    return frames


class Proxy:
    """A recording TCP proxy from a listening port on 127.0.0.1 to one upstream."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.upstream: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections = 0
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self, upstream: tuple[str, int]) -> None:
        """Start forwarding connections to ``upstream``."""
        self.upstream = upstream
        self._accept.start()

    def close(self) -> None:
        """Stop accepting and end every forwarding thread (bounded)."""
        self._stop.set()
        self.listener.close()
        self._accept.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _addr = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            assert self.upstream is not None
            upstream = socket.create_connection(self.upstream, timeout=5)
            self._connections += 1
            thread = threading.Thread(
                target=self._pump,
                args=(self._connections, client, upstream),
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def _pump(
        self, conn_id: int, client: socket.socket, upstream: socket.socket
    ) -> None:
        pending: dict[int, Exchange] = {}
        to_server, to_client = bytearray(), bytearray()
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, "c")
        sel.register(upstream, selectors.EVENT_READ, "s")
        try:
            while not self._stop.is_set():
                for key, _mask in sel.select(timeout=0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(1 << 16)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    if key.data == "c":
                        upstream.sendall(data)
                        to_server += data
                        for frame in _split_frames(to_server):
                            self._on_request(conn_id, frame, pending)
                    else:
                        client.sendall(data)
                        to_client += data
                        for frame in _split_frames(to_client):
                            (corr,) = struct.unpack_from(">i", frame, 4)
                            exchange = pending.pop(corr, None)
                            if exchange is not None:
                                exchange.response = frame
        finally:
            sel.close()
            client.close()
            upstream.close()

    def _on_request(
        self, conn_id: int, frame: bytes, pending: dict[int, Exchange]
    ) -> None:
        api_key, version, corr = struct.unpack_from(">hhi", frame, 4)
        exchange = Exchange(conn_id, api_key, version, corr, frame)
        pending[corr] = exchange
        with self.recorder.lock:
            self.recorder.exchanges.append(exchange)


# --- the broker ---------------------------------------------------------------------


def _start_broker(
    workdir: Path, advertise_port: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Start our broker advertising ``advertise_port``; return it and its bound port."""
    ready = workdir / "ready.json"
    log = (workdir / "broker.log").open("wb")
    cmd = [
        sys.executable,
        "-m",
        "broker",
        "serve",
        "--kafka-addr",
        "127.0.0.1:0",
        "--advertise-kafka-addr",
        f"127.0.0.1:{advertise_port}",
        "--admin-addr",
        "none",
        "--data-dir",
        str(workdir / "data"),
        "--ready-file",
        str(ready),
        "--log-format",
        "json",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    log.close()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((workdir / "broker.log").read_text())
        if ready.exists():
            try:
                info = json.loads(ready.read_text())
            except json.JSONDecodeError:
                info = None
            if info is not None:
                return process, int(info["kafka"]["default"]["port"])
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("broker not ready in time")


def _stop_broker(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# --- the client flows ---------------------------------------------------------------


def flow_kafka_python(bootstrap: str) -> None:
    """kafka-python: admin create, idempotent gzip producer, group consumer, commit."""
    import kafka
    import kafka.admin

    admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([kafka.admin.NewTopic(TOPIC, 1, 1)])
    admin.close()
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
    for key, value in RECORDS:
        producer.send(TOPIC, key=key, value=value, headers=[HEADER])
    producer.flush(timeout=30)
    producer.close()
    consumer = kafka.KafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    got = 0
    deadline = time.monotonic() + FLOW_TIMEOUT_S
    while got < len(RECORDS) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got += len(records)
    consumer.commit()
    consumer.close()
    if got < len(RECORDS):
        raise RuntimeError(f"kafka-python consumed {got} records")


def flow_aiokafka(bootstrap: str) -> None:
    """aiokafka: admin create, gzip producer, group consumer, commit."""
    asyncio.run(asyncio.wait_for(_aiokafka(bootstrap), FLOW_TIMEOUT_S))


async def _aiokafka(bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
    await producer.start()
    for key, value in RECORDS:
        await producer.send_and_wait(TOPIC, value, key=key, headers=[HEADER])
    await producer.stop()
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got = 0
    while got < len(RECORDS):
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            got += len(records)
    await consumer.commit()
    await consumer.stop()


def flow_confluent_kafka(bootstrap: str) -> None:
    """confluent-kafka: admin create, gzip producer, group consumer, sync commit."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "gzip"})
    for key, value in RECORDS:
        producer.produce(TOPIC, value, key, headers=[HEADER])
    if producer.flush(30) != 0:
        raise RuntimeError("confluent-kafka producer did not flush")
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    got = 0
    deadline = time.monotonic() + FLOW_TIMEOUT_S
    while got < len(RECORDS) and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            got += 1
    consumer.commit(asynchronous=False)
    consumer.close()
    if got < len(RECORDS):
        raise RuntimeError(f"confluent-kafka consumed {got} records")


def flow_kcat(bootstrap: str) -> None:
    """kcat: produce (the topic is auto-created), then a balanced group consumer."""
    header = f"{HEADER[0]}={HEADER[1].decode()}"
    lines = b"\n".join(key + b":" + value for key, value in RECORDS)
    produce = [KCAT, "-b", bootstrap, "-P", "-t", TOPIC, "-z", "gzip", "-H", header]
    produce += ["-K", ":"]
    subprocess.run(produce, input=lines, check=True, timeout=FLOW_TIMEOUT_S)
    consume = [KCAT, "-b", bootstrap, "-G", GROUP, "-e", "-f", "%k=%s\\n"]
    consume += ["-X", "auto.offset.reset=earliest", TOPIC]
    result = subprocess.run(
        consume, capture_output=True, check=True, timeout=FLOW_TIMEOUT_S
    )
    if result.stdout.count(b"\n") < len(RECORDS):
        raise RuntimeError(f"kcat consumed {result.stdout!r}")


def flow_kafkajs(bootstrap: str) -> None:
    """kafkajs: admin create, gzip producer, group consumer (commits on its own)."""
    spec = {
        "brokers": [bootstrap],
        "topic": TOPIC,
        "group": GROUP,
        "records": [[k.decode(), v.decode()] for k, v in RECORDS],
        "header": [HEADER[0], HEADER[1].decode()],
    }
    subprocess.run(
        ["node", str(JS_FLOW), json.dumps(spec)],
        check=True,
        timeout=FLOW_TIMEOUT_S,
        env={"NODE_PATH": str(JS_MODULES), "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )


def _versions() -> dict[str, tuple[str, str | None]]:
    """client -> (its version, the librdkafka version it embeds or None)."""
    import aiokafka
    import confluent_kafka
    import kafka

    kcat = subprocess.run([KCAT, "-V"], capture_output=True, text=True, check=True)
    kcat_version = re.search(r"Version ([0-9.]+)", kcat.stdout)
    kcat_rdkafka = re.search(r"librdkafka ([0-9.]+)", kcat.stdout)
    kafkajs = json.loads((JS_MODULES / "kafkajs" / "package.json").read_text())
    return {
        "kafka-python": (kafka.__version__, None),
        "aiokafka": (aiokafka.__version__, None),
        "confluent-kafka": (
            confluent_kafka.__version__,
            confluent_kafka.libversion()[0],
        ),
        "kcat": (
            kcat_version.group(1) if kcat_version else "unknown",
            kcat_rdkafka.group(1) if kcat_rdkafka else None,
        ),
        "kafkajs": (kafkajs["version"], None),
    }


FLOWS: dict[str, Callable[[str], None]] = {
    "kafka-python": flow_kafka_python,
    "aiokafka": flow_aiokafka,
    "confluent-kafka": flow_confluent_kafka,
    "kcat": flow_kcat,
    "kafkajs": flow_kafkajs,
}


# --- storing ------------------------------------------------------------------------


def _api_name(api_key: int) -> str:
    try:
        name = request_class(api_key).__name__.removesuffix("Request")
    except KeyError:
        return f"api{api_key}"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _select(exchanges: list[Exchange]) -> list[Exchange]:
    """At most PER_VERSION distinct exchanges per (API, version): the first ones and
    the one with the largest response (a Fetch that returned records)."""
    groups: dict[tuple[int, int], list[Exchange]] = {}
    for ex in exchanges:
        same = groups.setdefault((ex.api_key, ex.api_version), [])
        # distinct up to the correlation id
        if all(o.request[12:] != ex.request[12:] for o in same):
            same.append(ex)
    keep: set[int] = set()
    for same in groups.values():
        chosen = same[: PER_VERSION - 1]
        largest = max(same, key=lambda e: len(e.response or b""))
        if largest not in chosen:
            chosen.append(largest)
        elif len(same) >= PER_VERSION:
            chosen.append(same[PER_VERSION - 1])
        keep.update(id(e) for e in chosen)
    return [e for e in exchanges if id(e) in keep]


def _store(label: str, exchanges: list[Exchange]) -> list[dict[str, object]]:
    out_dir = GOLDEN / label
    out_dir.mkdir(parents=True)
    entries: list[dict[str, object]] = []
    for seq, ex in enumerate(_select(exchanges)):
        stem = f"{_api_name(ex.api_key)}_v{ex.api_version}_{seq:03d}"
        (out_dir / f"{stem}.bin").write_bytes(ex.request)
        response = None
        if ex.response is not None:
            response = f"{label}/{stem}.response.bin"
            (out_dir / f"{stem}.response.bin").write_bytes(ex.response)
        entries.append(
            {
                "request": f"{label}/{stem}.bin",
                "response": response,
                "api_key": ex.api_key,
                "api_version": ex.api_version,
                "connection": ex.connection,
                "correlation_id": ex.correlation_id,
            }
        )
    return entries


def capture(client: str) -> list[Exchange]:
    """Run one client's flow through a recording proxy in front of a fresh broker."""
    recorder = Recorder()
    proxy = Proxy(recorder)
    with tempfile.TemporaryDirectory(prefix=f"golden-{client}-") as tmp:
        broker, port = _start_broker(Path(tmp), proxy.port)
        try:
            proxy.start(("127.0.0.1", port))
            FLOWS[client](f"127.0.0.1:{proxy.port}")
            time.sleep(0.5)  # let the last responses through
        except BaseException:
            log = (Path(tmp) / "broker.log").read_text(errors="replace")
            print(
                f"{client} flow failed; broker log tail:\n{log[-4000:]}",
                file=sys.stderr,
            )
            raise
        finally:
            proxy.close()
            _stop_broker(broker)
    with recorder.lock:
        return list(recorder.exchanges)


def main(argv: list[str]) -> int:
    """Capture the clients named in ``argv`` (default: all), then rewrite their files.

    Every flow runs before anything is written, so a failing flow leaves the stored
    frames as they were.
    """
    unknown = set(argv) - set(FLOWS)
    if unknown:
        print(
            f"unknown clients {sorted(unknown)}; known: {list(FLOWS)}", file=sys.stderr
        )
        return 2
    clients = argv or list(FLOWS)
    versions = _versions()
    captured = {client: capture(client) for client in clients}
    index_path = GOLDEN / "index.json"
    index: dict[str, dict[str, object]] = {}
    if argv and index_path.exists():  # recapturing some clients: keep the others
        index = json.loads(index_path.read_text())["clients"]
    elif GOLDEN.exists():
        shutil.rmtree(GOLDEN)
    GOLDEN.mkdir(exist_ok=True)
    for client, exchanges in captured.items():
        for old in [k for k, v in index.items() if v["client"] == client]:
            shutil.rmtree(GOLDEN / old, ignore_errors=True)
            del index[old]
        version, librdkafka = versions[client]
        label = f"{client}-{version}"
        shutil.rmtree(GOLDEN / label, ignore_errors=True)
        frames = _store(label, exchanges)
        index[label] = {
            "client": client,
            "version": version,
            "librdkafka": librdkafka,
            "frames": frames,
        }
        print(f"{label}: {len(exchanges)} exchanges, {len(frames)} kept")
    index_path.write_text(
        json.dumps({"clients": index}, indent=1, sort_keys=True) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
