"""``alpha-panda topics bootstrap|list`` against a real Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from alpha_panda.adapters.kafka import KafkaLog
from alpha_panda.cli.topics import app
from alpha_panda.stream.topics import DAY_MS, REGISTRY, KeyKind, TopicSpec
from alpha_panda.testing.tansu import kafka_test_settings, tansu_broker

pytestmark = pytest.mark.integration


def test_bootstrap_creates_the_whole_taxonomy_once_and_list_shows_it() -> None:
    runner = CliRunner()
    total = len(REGISTRY.all())
    with tansu_broker() as broker:
        before = runner.invoke(app, ["list", "--log", broker.url, "--json"])
        assert before.exit_code == 0, before.output
        assert not any(row["exists"] for row in json.loads(before.stdout))

        first = runner.invoke(app, ["bootstrap", "--log", broker.url])
        assert first.exit_code == 0, first.output
        assert f"{total} topics created" in first.stdout
        again = runner.invoke(app, ["bootstrap", "--log", broker.url])
        assert again.exit_code == 0, again.output
        assert f"0 topics created, {total} already existed" in again.stdout

        listed = json.loads(runner.invoke(app, ["list", "--log", broker.url, "--json"]).stdout)
        by_name = {row["name"]: row for row in listed}
        assert by_name["market.ticks"]["exists"]
        assert by_name["market.ticks"]["log_partitions"] == REGISTRY.partitions("market.ticks")
        assert by_name["paper.orders.filled.dlq"]["exists"]
        assert all(row["exists"] for row in listed)
        table = runner.invoke(app, ["list", "--log", broker.url])
        assert "zerodha.signals.validated" in table.stdout


def test_bootstrap_fails_clearly_when_the_broker_is_down() -> None:
    with tansu_broker() as broker:
        url = broker.url
    result = CliRunner().invoke(app, ["bootstrap", "--log", url],
                                env={"ALPHA_PANDA_KAFKA__OPERATION_TIMEOUT_S": "1"})
    assert result.exit_code == 2
    assert "error:" in result.output


def test_bootstrap_fails_on_a_topic_that_exists_with_other_partitions() -> None:
    """A topic made outside bootstrap (a broker that auto-creates topics with one
    partition; a hand-run ``rpk topic create``) was reported as "already existed", and the
    system then failed on every produce to it ("Local: Unknown partition"), or, with more
    partitions than the registry, lost the co-partitioning that gives a member whole
    instruments."""
    runner = CliRunner()
    with tansu_broker() as broker:
        async def make_it_by_hand() -> None:
            kafka = KafkaLog(kafka_test_settings(broker.bootstrap))
            try:
                await kafka.ensure_topics([TopicSpec("paper.signals.raw", 1,
                                                     KeyKind.STRATEGY_INSTRUMENT, DAY_MS, None)])
            finally:
                await kafka.close()

        asyncio.run(make_it_by_hand())
        result = runner.invoke(app, ["bootstrap", "--log", broker.url])
        assert result.exit_code == 2, result.output
        assert "paper.signals.raw" in result.output
        assert "1 partition" in result.output and "registry: 6" in result.output
        # Everything else was created all the same.
        listed = json.loads(runner.invoke(app, ["list", "--log", broker.url, "--json"]).stdout)
        assert all(row["exists"] for row in listed)
