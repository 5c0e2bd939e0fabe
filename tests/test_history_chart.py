"""The usage page's chart of daily spending, rendered from hand-made ``History`` values.

``render_history_chart`` is a pure function: these tests read its SVG as XML and its
table as text, in English and Korean, without a server or a database.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flamel_usage.http.pages.chart import (
    HISTORY_CSV,
    MAX_DAY_LABELS,
    PLOT_BOTTOM,
    PLOT_TOP,
    axis_top,
)
from flamel_usage.http.pages.render import render_history_chart
from flamel_usage.ledger.history import Bucket, History

SEOUL = ZoneInfo("Asia/Seoul")
SVG = "{http://www.w3.org/2000/svg}"
PLOT_HEIGHT = PLOT_BOTTOM - PLOT_TOP


def history(*days: tuple[int, int, int], zone: str = "Asia/Seoul") -> History:
    """Consecutive days from 2026-11-01 spending ``(plan, purchased, postpaid)`` each."""
    start = datetime(2026, 11, 1, tzinfo=SEOUL)
    buckets = tuple(
        Bucket(
            start=start + timedelta(days=index),
            end=start + timedelta(days=index + 1),
            plan=plan,
            purchased=purchased,
            postpaid=postpaid,
            operations={"ttp": 1, "edit": 0},
        )
        for index, (plan, purchased, postpaid) in enumerate(days)
    )
    return History(zone, "day", start, start + timedelta(days=len(days)), buckets)


def svg_of(html: str) -> ET.Element:
    found = re.search(r"<svg.*</svg>", html, re.DOTALL)
    assert found is not None
    return ET.fromstring(found.group())  # noqa: S314  (our own output, not untrusted)


def buckets_of(svg: ET.Element) -> list[ET.Element]:
    return svg.findall(f"{SVG}g[@class='chart-bucket']")


def rects(group: ET.Element) -> dict[str, tuple[float, float]]:
    """``pool: (y, height)`` of a bucket's bars."""
    return {
        rect.attrib["class"].removeprefix("pool-"): (
            float(rect.attrib["y"]),
            float(rect.attrib["height"]),
        )
        for rect in group.findall(f"{SVG}rect")
    }


def table_rows(html: str) -> list[list[str]]:
    body = html[html.index("<tbody>") : html.index("</tbody>")]
    return [
        re.findall(r"<t[hd][^>]*>(?:<time[^>]*>)?([^<]*)", row)
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def test_bar_heights_are_proportional_and_stacked_by_pool() -> None:
    # 4 credits from the plan; nothing; 1 + 0.5 + 0.5 credits from each pool.
    html = render_history_chart("en", history((4000, 0, 0), (0, 0, 0), (1000, 500, 500)))
    first, idle, third = (rects(group) for group in buckets_of(svg_of(html)))

    scale = PLOT_HEIGHT / 5000  # the axis tops at 5 credits, the round number above 4
    assert first == {"plan": (pytest.approx(PLOT_BOTTOM - 4000 * scale), 4000 * scale)}
    assert idle == {}  # a day without spending: its group, no bar
    plan_y, plan_height = third["plan"]
    purchased_y, purchased_height = third["purchased"]
    postpaid_y, postpaid_height = third["postpaid"]
    assert plan_height == pytest.approx(first["plan"][1] / 4)
    assert purchased_height == postpaid_height == pytest.approx(plan_height / 2)
    assert plan_y + plan_height == pytest.approx(PLOT_BOTTOM)  # plan at the bottom
    assert purchased_y + purchased_height == pytest.approx(plan_y)
    assert postpaid_y + postpaid_height == pytest.approx(purchased_y)


def test_every_day_is_present_with_its_date_and_tooltip() -> None:
    html = render_history_chart("en", history((0, 0, 0), (1500, 0, 0), (0, 0, 0)))
    groups = buckets_of(svg_of(html))

    assert [group.attrib["data-start"] for group in groups] == [
        "2026-11-01T00:00:00+09:00",
        "2026-11-02T00:00:00+09:00",
        "2026-11-03T00:00:00+09:00",
    ]
    tips = [group.findtext(f"{SVG}title") for group in groups]
    assert tips == ["November 1: 0 credits", "November 2: 1.5 credits", "November 3: 0 credits"]
    days = [group.findtext(f"{SVG}text") for group in groups]
    assert days == ["1", "2", "3"]


def test_the_chart_is_named_described_and_given_as_a_table() -> None:
    html = render_history_chart("en", history((2000, 250, 0), (0, 0, 0), (0, 0, 1250)))
    svg = svg_of(html)

    assert svg.attrib["role"] == "img"
    assert svg.attrib["aria-labelledby"] == "history-title history-desc"
    assert svg.find(f"{SVG}title[@id='history-title']") is not None
    assert svg.findtext(f"{SVG}title") == "Credit spent per day, November 1 to November 3"
    assert svg.findtext(f"{SVG}desc") == (
        "3.5 credits spent in all; the most on November 1: 2.25 credits."
        " Days in the billing time zone (Asia/Seoul). The table that follows lists every day."
    )
    assert '<div class="visually-hidden"><table id="history-table">' in html
    assert re.findall(r'<th scope="col">([^<]*)', html) == [
        "Day",
        "Plan credit",
        "Purchased credit",
        "Postpaid usage",
        "Total",
    ]
    assert table_rows(html) == [
        ["November 1", "2", "0.25", "0", "2.25"],
        ["November 2", "0", "0", "0", "0"],
        ["November 3", "0", "0", "1.25", "1.25"],
    ]
    assert '<time datetime="2026-11-03">' in html
    assert f'<a href="{HISTORY_CSV}" download>Download CSV</a>' in html
    assert HISTORY_CSV == "/api/users/me/usage/history?format=csv"


def test_korean_labels() -> None:
    html = render_history_chart("ko", history((1000, 0, 0), (3000, 0, 0)))
    svg = svg_of(html)

    assert svg.findtext(f"{SVG}title") == "11월 1일 ~ 11월 2일 일별 크레딧 사용량"
    assert "가장 많이 사용한 날은 11월 2일(3 크레딧)" in (svg.findtext(f"{SVG}desc") or "")
    assert "CSV 다운로드" in html
    assert '<h2 id="history-heading">일별 사용량</h2>' in html
    assert re.findall(r'<th scope="col">([^<]*)', html)[0] == "날짜"
    assert table_rows(html)[1] == ["11월 2일", "3", "0", "0", "3"]
    assert [group.findtext(f"{SVG}title") for group in buckets_of(svg)] == [
        "11월 1일: 1 크레딧",
        "11월 2일: 3 크레딧",
    ]


def test_nothing_spent_is_said_and_drawn_flat() -> None:
    html = render_history_chart("en", history((0, 0, 0), (0, 0, 0)))
    svg = svg_of(html)

    assert svg.findall(f".//{SVG}rect") == []
    assert (svg.findtext(f"{SVG}desc") or "").startswith("No credit spent yet.")
    axis = [text.text for text in svg.findall(f"{SVG}text[@class='chart-axis']")]
    assert axis == ["0", "0.5", "1"]


def test_text_is_escaped() -> None:
    html = render_history_chart("en", history((1000, 0, 0), zone='<script>&"x'))

    assert "<script>" not in html
    assert "(&lt;script&gt;&amp;&#34;x)" in html
    svg_of(html)  # still well-formed XML


def test_a_long_period_names_some_days_only() -> None:
    month = history(*[(index * 100, 0, 0) for index in range(31)])
    html = render_history_chart("en", month)
    groups = buckets_of(svg_of(html))

    assert len(groups) == 31
    labels = [group.findtext(f"{SVG}text") for group in groups]
    named = [label for label in labels if label is not None]
    assert 1 < len(named) <= MAX_DAY_LABELS
    assert named[:3] == ["1", "3", "5"]
    assert len(table_rows(html)) == 31


@pytest.mark.parametrize(
    ("largest", "top"),
    [(0, 1000), (1, 1), (3, 5), (4000, 5000), (5000, 5000), (5001, 10_000), (120_000, 200_000)],
)
def test_the_axis_tops_at_a_round_number(largest: int, top: int) -> None:
    assert axis_top(largest) == top
