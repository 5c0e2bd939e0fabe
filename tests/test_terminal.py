"""``flamel-usage usage``: what a customer sees in a terminal, and what a script gets."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from flamel_usage.cli.terminal import (
    EXIT_AUTH,
    EXIT_UNREACHABLE,
    HISTORY_BAR_WIDTH,
    render,
    render_history,
    wants_colour,
)
from flamel_usage.client import UsageHistory, UsageInfo
from flamel_usage.ledger.limits import count_state
from tests.conftest import FakeClock
from tests.factories import Factory
from tests.processes import free_port, run_cli, running_server

DTO = {
    "currentCredit": 466,
    "additionalCredit": 12.5,
    "maxCredit": 500,
    "period": "2026-11-01T00:00:00+09:00/2026-12-01T00:00:00+09:00",
    "ttpCount": 10,
    "maxTtpCount": 10,
    "editCount": 4,
    "maxEditCount": None,
    "postpaidUsageCount": None,
}
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def test_plain_text_when_piped() -> None:
    text = render(UsageInfo.from_dto(DTO), colour=False, now=NOW)

    assert text.splitlines() == [
        "Period           2026-11-01 00:00 → 2026-12-01 00:00 (+0900), resets in 5d 12h",
        "Plan credit      [######################..] 466 of 500 left",
        "Purchased credit 12.5 left",
        "TTP              [########################] 10 of 10 used limit reached",
        "Edits            unlimited (4 used)",
    ]
    assert "\033[" not in text


def test_colours_on_a_terminal_and_postpaid_usage() -> None:
    info = UsageInfo.from_dto({**DTO, "ttpCount": 8, "postpaidUsageCount": 3})
    text = render(info, colour=True, now=NOW)

    assert "\033[33m" in text  # 8 of 10: near the limit
    assert "█" in text
    assert text.splitlines()[-1] == "Postpaid usage   3 credits this period"


@pytest.mark.parametrize(("used", "limit"), [(7, 10), (8, 10), (3, 4), (79, 100), (80, 100)])
def test_the_terminal_warns_where_the_usage_page_does(used: int, limit: int) -> None:
    """Both read the one threshold of ``ledger/limits.py``: yellow exactly when near."""
    info = UsageInfo.from_dto({**DTO, "ttpCount": used, "maxTtpCount": limit})
    [ttp] = [line for line in render(info, colour=True, now=NOW).splitlines() if "TTP" in line]
    assert ("\033[33m" in ttp) == (count_state(used, limit) == "near")


def _day(day: int, plan: float, purchased: float, postpaid: float) -> dict[str, object]:
    return {
        "start": f"2026-11-{day:02}T00:00:00+09:00",
        "end": f"2026-11-{day + 1:02}T00:00:00+09:00",
        "credit": {"plan": plan, "purchased": purchased, "postpaid": postpaid},
        "operations": {"ttp": 0, "edit": 0},
    }


HISTORY = UsageHistory.from_dto(
    {
        "timezone": "Asia/Seoul",
        "granularity": "day",
        "from": "2026-11-01T00:00:00+09:00",
        "to": "2026-11-05T00:00:00+09:00",
        "buckets": [_day(1, 4, 0, 0), _day(2, 0, 0, 0), _day(3, 1, 0.5, 0.5), _day(4, 0, 0, 1.5)],
    }
)


def test_history_plain_text_when_piped() -> None:
    lines = render_history(HISTORY, colour=False).splitlines()

    assert lines[0] == "Spent per day  2026-11-01 00:00 → 2026-11-05 00:00 (Asia/Seoul)"
    width = HISTORY_BAR_WIDTH
    assert lines[1:5] == [
        "2026-11-01 Sun " + "#" * width + " " * 9 + "4",  # the largest day: the full width
        "2026-11-02 Mon " + " " * width + " " * 9 + "0",  # a day without spending is shown
        "2026-11-03 Tue " + "#" * 10 + "=" * 5 + "~" * 5 + " " * (width - 20) + " " * 9 + "2",
        "2026-11-04 Wed " + "~" * 15 + " " * (width - 15) + " " * 7 + "1.5",
    ]
    assert lines[5] == "Total 7.5 (plan 5, purchased 0.5, postpaid 2)"
    assert lines[6] == "# plan  = purchased  ~ postpaid"
    assert "\033[" not in "\n".join(lines)


def test_history_in_colour_on_a_terminal() -> None:
    text = render_history(HISTORY, colour=True)

    third = text.splitlines()[3]
    assert third.startswith("2026-11-03 Tue \033[32m" + "█" * 10 + "\033[0m\033[36m" + "█" * 5)
    assert "\033[35m" + "█" * 5 + "\033[0m" in third
    assert "#" not in text
    assert "\033[0m\033[0m" not in text  # an empty segment is not painted


def test_a_history_without_spending_draws_no_bars() -> None:
    idle = UsageHistory.from_dto(
        {
            "timezone": "UTC",
            "granularity": "day",
            "from": "2026-11-01T00:00:00Z",
            "to": "2026-11-02T00:00:00Z",
            "buckets": [
                {
                    "start": "2026-11-01T00:00:00Z",
                    "end": "2026-11-02T00:00:00Z",
                    "credit": {"plan": 0, "purchased": 0, "postpaid": 0},
                    "operations": {},
                }
            ],
        }
    )
    lines = render_history(idle, colour=False).splitlines()
    assert lines[1] == "2026-11-01 Sun " + " " * (HISTORY_BAR_WIDTH + 9) + "0"
    assert lines[2] == "Total 0 (plan 0, purchased 0, postpaid 0)"


def test_history_and_json_cannot_be_asked_together() -> None:
    both = run_cli({}, "usage", "--api-key", "flm_x", "--history", "--json")
    assert both.returncode == 2
    assert "not allowed with" in both.stderr
    assert both.stdout == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_for_a_real_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert wants_colour(_Terminal())
    assert not wants_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour(_Terminal())


async def test_the_command_against_a_real_server(factory: Factory, environ: dict[str, str]) -> None:
    user = await factory.user(await factory.plan(credits=100, max_ttp=10))
    await factory.purchase(user, 12.5)
    key = await factory.key(user)
    with running_server(environ) as base_url:
        raw = httpx.get(f"{base_url}/api/users/me/usage", headers={"X-Api-Key": key}).json()
        as_json = run_cli({}, "usage", "--api-key", key, "--base-url", base_url, "--json")
        from_env = run_cli({"FLAMEL_API_KEY": key}, "usage", "--base-url", base_url)
        wrong = run_cli({}, "usage", "--api-key", "flm_" + "x" * 43, "--base-url", base_url)
    missing = run_cli({}, "usage", "--base-url", base_url)
    unreachable = run_cli(
        {}, "usage", "--api-key", key, "--base-url", f"http://127.0.0.1:{free_port()}"
    )

    assert (as_json.returncode, orjson.loads(as_json.stdout)) == (0, raw)
    assert from_env.returncode == 0
    assert "Plan credit" in from_env.stdout
    assert "100 of 100 left" in from_env.stdout
    assert "12.5 left" in from_env.stdout
    assert "\033[" not in from_env.stdout
    for result, code in ((wrong, EXIT_AUTH), (missing, EXIT_AUTH), (unreachable, EXIT_UNREACHABLE)):
        assert result.returncode == code, result.stderr
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "wrong_api_key" in wrong.stderr


async def test_history_against_a_real_server(
    factory: Factory, clock: FakeClock, environ: dict[str, str]
) -> None:
    clock.set(datetime.now(UTC))  # the server reads the real clock: spend today
    plan = await factory.plan(credits=10, max_ttp=None, postpaid=True)
    user = await factory.user(plan)
    await factory.purchase(user, 5)
    await factory.charge(user, "image", "history-1", 8)  # from the plan
    await factory.charge(user, "image", "history-2", 4.5)  # 2 from the plan, 2.5 purchased
    await factory.charge(user, "image", "history-3", 3)  # 2.5 purchased, 0.5 postpaid
    key = await factory.key(user)
    with running_server(environ) as base_url:
        shown = run_cli({}, "usage", "--history", "--api-key", key, "--base-url", base_url)
        raw = httpx.get(f"{base_url}/api/users/me/usage/history", headers={"X-Api-Key": key}).json()
        refused = run_cli(
            {}, "usage", "--history", "--api-key", "flm_" + "x" * 43, "--base-url", base_url
        )

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 1 + len(raw["buckets"]) + 2
    assert lines[0].startswith("Spent per day  ")
    days = lines[1:-2]
    for line, bucket in zip(days, raw["buckets"], strict=True):
        assert line.startswith(bucket["start"][:10] + " ")
    # 15.5 credits today, the largest day: the full width, stacked plan, purchased, postpaid
    assert days[0].endswith(" 15.5")
    assert "#" * 26 + "=" * 13 + "~" + " " in days[0]
    assert all(line.endswith(" 0") for line in days[1:])
    assert lines[-2] == "Total 15.5 (plan 10, purchased 5, postpaid 0.5)"
    assert "\033[" not in shown.stdout  # piped: plain
    assert refused.returncode == EXIT_AUTH
    assert "wrong_api_key" in refused.stderr
