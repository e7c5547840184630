"""InitProducerId's transaction timeout check.

InitProducerId with a transactional id is refused at once with
INVALID_TRANSACTION_TIMEOUT when ``transaction.timeout.ms`` is above the broker's
``transaction.max.timeout.ms`` (checked first, as Kafka does), which librdkafka
treats as fatal, and the broker logs one line saying why. Idempotent producers
without a transactional id are unaffected by the maximum.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from protocol.error_codes import ErrorCode
from protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from tests._broker import BrokerProcess, request, start_broker

pytestmark = pytest.mark.integration

FAST_S = 10.0  # far below every client's own timeout (60 s and more)


def _init_transactions_error(broker: BrokerProcess, **config: object) -> KafkaError:
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": "tx", **config}
    )
    with pytest.raises(KafkaException) as info:
        producer.init_transactions(30)
    err = info.value.args[0]
    assert isinstance(err, KafkaError)
    return err


def test_librdkafka_transaction_timeout_above_the_broker_maximum_is_refused(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """A transaction.timeout.ms above transaction.max.timeout.ms is refused first,
    with INVALID_TRANSACTION_TIMEOUT naming the broker's maximum."""
    broker = broker_factory("--set", "transaction.max.timeout.ms=30000")
    start = time.monotonic()
    err = _init_transactions_error(broker, **{"transaction.timeout.ms": 60000})
    assert time.monotonic() - start < FAST_S
    assert err.code() == KafkaError.INVALID_TRANSACTION_TIMEOUT
    assert err.fatal()
    assert "max.transaction.timeout.ms" in err.str()
    [event] = broker.events("transaction_timeout_refused")
    assert (event["transaction_timeout_ms"], event["transaction_max_timeout_ms"]) == (
        60000,
        30000,
    )


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the raw requests (each asks for its own transactional id)."""
    tmp = tmp_path_factory.mktemp("raw-init")
    b = start_broker(tmp / "data", log_dir=tmp / "logs")
    try:
        yield b
    finally:
        assert b.stop() == 0


@pytest.mark.parametrize(
    ("transactional_id", "timeout_ms", "expected"),
    [
        ("raw-a", 60_000, ErrorCode.NONE),
        ("raw-b", 900_000, ErrorCode.NONE),
        ("raw", 900_001, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
        ("raw", 0, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
        ("raw", -1, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
        (None, 900_001, ErrorCode.NONE),
        ("", 60_000, ErrorCode.NONE),
    ],
)
def test_raw_init_producer_id_answers(
    shared: BrokerProcess,
    transactional_id: str | None,
    timeout_ms: int,
    expected: ErrorCode,
) -> None:
    """The default maximum is Kafka's 900000 ms; a new transactional id gets a
    producer id with epoch 0; a request without a transactional id gets a producer
    id whatever its timeout."""
    with shared.connect() as sock:
        resp = request(
            sock,
            22,
            4,
            InitProducerIdRequest(
                transactional_id=transactional_id, transaction_timeout_ms=timeout_ms
            ),
        )
    assert isinstance(resp, InitProducerIdResponse)
    assert resp.error_code == expected
    if expected == ErrorCode.NONE:
        assert resp.producer_id >= 0
        assert resp.producer_epoch == 0
    else:
        assert (resp.producer_id, resp.producer_epoch) == (-1, -1)
