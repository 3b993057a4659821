"""``migrate --tsm`` / ``--no-tsm``: Transparent State Migration unless --no-tsm (the
spelled-out --tsm is for scripts passing ``--{tsm}``, as ``fusenfs check`` does)."""

from __future__ import annotations

import pytest

from contrib.testserver.cli import build_parser


@pytest.mark.parametrize(
    ("flags", "no_tsm"), [([], False), (["--tsm"], False), (["--no-tsm"], True)]
)
def test_migrate_tsm_flags(flags: list[str], no_tsm: bool) -> None:
    args = build_parser().parse_args(["migrate", "a", "--to", "B", *flags])
    assert args.no_tsm is no_tsm


def test_tsm_and_no_tsm_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["migrate", "a", "--to", "B", "--tsm", "--no-tsm"])
    assert "not allowed with argument" in capsys.readouterr().err
