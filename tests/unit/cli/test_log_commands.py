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


def test_cancel_of_something_that_is_no_order_id_echoes_a_capped_part_of_it(
        tmp_path: Path) -> None:
    # refused before the log is read (the scan of every order topic looked for it), and
    # without repeating the whole 5,000 characters back
    result = CliRunner().invoke(app, ["cancel", "b" * 5000, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (f"error: not an order id: '{'b' * 64}'… (5000 characters; an "
                             "order id has at most 64)\n")
