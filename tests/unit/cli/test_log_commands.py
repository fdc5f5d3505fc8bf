"""The commands that write to a running system's log refuse a data directory without one:
opening it would make an empty log, and a kill switch there would stop nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app


@pytest.mark.parametrize("args", [["kill"], ["kill", "--flatten"], ["cancel", "abc123"],
                                  ["dlq", "list", "--topic", "paper.signals.raw"]])
def test_a_mistyped_data_dir_is_an_error_and_makes_no_log(tmp_path: Path, args: list[str]) -> None:
    typo = tmp_path / "dtaa"
    result = CliRunner().invoke(app, [*args, "--data-dir", str(typo)])
    assert result.exit_code == 2
    assert f"no log at {typo / 'log.sqlite'}" in result.output
    assert not typo.exists()


def test_topics_list_still_works_before_the_first_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["topics", "list", "--data-dir", str(tmp_path / "new")])
    assert result.exit_code == 0 and "market.ticks" in result.output
    assert "38 topics, 0 on the log" in result.stdout
    assert f"no log at {tmp_path / 'new' / 'log.sqlite'} yet" in result.stderr
    # and makes none: `dlq list` or `kill` there afterwards answered as if a system ran there
    assert not (tmp_path / "new").exists()
    listed = CliRunner().invoke(app, ["dlq", "list", "--data-dir", str(tmp_path / "new")])
    assert listed.exit_code == 2 and "no dead letters" not in listed.output


def test_cancel_of_something_that_is_no_order_id_echoes_a_capped_part_of_it(
        tmp_path: Path) -> None:
    # refused before the log is read (the scan of every order topic looked for it), and
    # without repeating the whole 5,000 characters back
    result = CliRunner().invoke(app, ["cancel", "b" * 5000, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (f"error: not an order id: '{'b' * 64}'… (5000 characters; an "
                             "order id has at most 64)\n")


def test_cancel_of_a_zerodha_order_without_its_broker_says_which_broker(tmp_path: Path) -> None:
    # the live order's id copied from the zerodha tab, --broker left at paper: it said only
    # "no order ... on paper", as for an id that is no order at all
    import asyncio
    import time

    from alpha_panda.domain.events import OrderSubmitted, new_envelope
    from alpha_panda.domain.values import OrderType, Product, Side, Validity
    from alpha_panda.services.logs import open_log
    from alpha_panda.stream.emit import Emit, to_output
    from alpha_panda.stream.topics import REGISTRY

    order_id = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"

    async def write() -> None:
        log = open_log("embedded", tmp_path)
        await log.start()
        await log.ensure_topics(REGISTRY.all())
        submitted = OrderSubmitted(
            order_id=order_id, signal_id="sig-1", strategy_id="s1", instrument_token=408065,
            side=Side.BUY, quantity=1, order_type=OrderType.LIMIT, limit_price=90_00,
            trigger_price=None, product=Product.CNC, validity=Validity.DAY, tag="ap" + "0" * 18,
            broker_order_id="250000000000001", ts=time.time_ns())
        env = new_envelope(submitted, id="e1", ts=submitted.ts, source="zerodha-trading-engine",
                           broker="zerodha", key="s1:408065")
        await log.append([to_output(Emit("zerodha.orders.submitted", env))])
        await log.close()

    asyncio.run(write())
    result = CliRunner().invoke(app, ["cancel", order_id, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert f"no order '{order_id}' on paper: it is a zerodha order (--broker zerodha)" in (
        result.output)


def test_cancel_of_an_order_rejected_at_once_says_it_was_rejected(tmp_path: Path) -> None:
    # the engines reject an order they will not place (past the MIS cut-off, outside the
    # price band, a live signal gone stale) with no OrderSubmitted before it: `cancel` of its
    # id, as the dashboard lists it REJECTED (and the API answers 409), said "no order ... on
    # paper", as for a mistyped id, and on the other broker named no broker at all
    import asyncio
    import time

    from alpha_panda.domain.events import OrderRejected, new_envelope
    from alpha_panda.domain.values import Side
    from alpha_panda.services.logs import open_log
    from alpha_panda.stream.emit import Emit, to_output
    from alpha_panda.stream.topics import REGISTRY

    order_id = "1a1b2c3d4e5f60718293a4b5c6d7e8f9"

    async def write() -> None:
        log = open_log("embedded", tmp_path)
        await log.start()
        await log.ensure_topics(REGISTRY.all())
        rejected = OrderRejected(
            order_id=order_id, strategy_id="s1", instrument_token=408065, side=Side.BUY,
            quantity=1, reason_code="MIS_CUTOFF", message="past 15:20", ts=time.time_ns())
        env = new_envelope(rejected, id="e1", ts=rejected.ts, source="paper-trading-engine",
                           broker="paper", key="s1:408065")
        await log.append([to_output(Emit("paper.orders.rejected", env))])
        await log.close()

    asyncio.run(write())
    result = CliRunner().invoke(app, ["cancel", order_id, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert f"order {order_id} is REJECTED: nothing is left of it to cancel" in result.output
    other = CliRunner().invoke(app, ["cancel", order_id, "--broker", "zerodha",
                                     "--data-dir", str(tmp_path)])
    assert other.exit_code == 2
    assert f"no order '{order_id}' on zerodha: it is a paper order (--broker paper)" in (
        other.output)


def test_bootstrap_in_a_data_directory_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    # open_log's mkdir ended it in a FileExistsError traceback
    (tmp_path / "data").write_text("not a directory")
    result = CliRunner().invoke(app, ["topics", "bootstrap", "--data-dir",
                                      str(tmp_path / "data")])
    assert result.exit_code == 2
    assert result.stderr == (f"error: cannot write in {tmp_path / 'data'}: File exists; the "
                             "data directory must be writable (--data-dir, "
                             "ALPHA_PANDA_DATA_DIR)\n")


@pytest.mark.parametrize("args", [
    ["kill"], ["kill", "--flatten"], ["halt", "s"], ["cancel", "abc"], ["dlq", "list"],
    ["dlq", "replay", "--topic", "market.ticks"], ["topics", "list"],
    ["ticks", "export", "out.csv"]])
def test_a_memory_log_is_refused_as_it_reaches_no_running_system(
        args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # a memory log is the process's own: `kill --log memory` (or ALPHA_PANDA_LOG=memory
    # left set) wrote the switch to this command's log, printed "kill switch for paper:
    # on" and exited 0, while the running system traded on
    monkeypatch.setenv("ALPHA_PANDA_LOG", "memory")
    result = CliRunner().invoke(app, args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(
        "error: a memory log lives in the process that made it, so no running system is "
        "reached through it: give the running system's log")
