"""Transactional producers fail fast: transactions are not supported.

InitProducerId with a transactional id is refused at once — with
INVALID_TRANSACTION_TIMEOUT when ``transaction.timeout.ms`` is above the broker's
``transaction.max.timeout.ms`` (checked first, as Kafka does), else with
TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which librdkafka, kafka-python and kafkajs
all treat as fatal — and the broker logs one line saying why. Idempotent producers
without a transactional id are unaffected.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from kafka import KafkaProducer
from kafka.errors import KafkaError as KafkaPythonError

from protocol.error_codes import ErrorCode
from protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from tests._broker import ROOT, BrokerProcess, request

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


def test_librdkafka_init_transactions_fails_fast_with_a_fatal_error(
    broker: BrokerProcess,
) -> None:
    """confluent-kafka's init_transactions() fails within seconds with a fatal,
    non-retriable error; the broker logs that transactions are not supported."""
    start = time.monotonic()
    err = _init_transactions_error(broker)
    assert time.monotonic() - start < FAST_S
    assert err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert err.fatal()
    assert not err.retriable()
    assert "Transactional Id authorization failed" in err.str()
    [event] = broker.events("transactions_not_supported")
    assert event["transactional_id"] == "tx"
    assert "does not implement transactions" in event["detail"]


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
    assert broker.events("transactions_not_supported") == []


def test_kafka_python_init_transactions_fails_fast(broker: BrokerProcess) -> None:
    """kafka-python's init_transactions() raises the authorization error at once."""
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, transactional_id="kp-tx", max_block_ms=30000
    )
    start = time.monotonic()
    try:
        with pytest.raises(KafkaPythonError) as info:
            producer.init_transactions()
    finally:
        producer.close(timeout=5)
    assert time.monotonic() - start < FAST_S
    assert type(info.value).__name__ == "TransactionalIdAuthorizationFailedError"


_KAFKAJS = """
const { Kafka, logLevel } = require('kafkajs');
const kafka = new Kafka({ brokers: [process.argv[1]], logLevel: logLevel.NOTHING });
const producer = kafka.producer({ transactionalId: 'js-tx', maxInFlightRequests: 1 });
(async () => {
  try {
    await producer.connect();
    await producer.transaction();
    console.log(JSON.stringify({ ok: true }));
  } catch (e) {
    console.log(JSON.stringify({ name: e.name, type: e.type, retriable: e.retriable }));
  }
  process.exit(0);
})();
"""


def test_kafkajs_transaction_fails_fast(broker: BrokerProcess) -> None:
    """kafkajs' producer.transaction() rejects at once with a non-retriable error."""
    start = time.monotonic()
    out = subprocess.run(
        ["node", "-e", _KAFKAJS, broker.bootstrap],
        cwd=Path(ROOT) / "tests" / "js",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert time.monotonic() - start < FAST_S + 5  # node start-up included
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "name": "KafkaJSProtocolError",
        "type": "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "retriable": False,
    }


@pytest.mark.parametrize(
    ("transactional_id", "timeout_ms", "expected"),
    [
        ("raw", 60_000, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        ("raw", 900_000, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        ("raw", 900_001, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
        ("raw", 0, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
        ("raw", -1, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
        (None, 900_001, ErrorCode.NONE),
        ("", 60_000, ErrorCode.NONE),
    ],
)
def test_raw_init_producer_id_answers(
    broker: BrokerProcess,
    transactional_id: str | None,
    timeout_ms: int,
    expected: ErrorCode,
) -> None:
    """The default maximum is Kafka's 900000 ms; a request without a transactional id
    still gets a producer id whatever its timeout."""
    with broker.connect() as sock:
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
