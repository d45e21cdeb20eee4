"""The `wikipedia` and `lookup` tools against a loopback MediaWiki API: answers, and every failure mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakeservers import (
    FakeServer,
    Reply,
    SilentServer,
    assert_one_line,
    failure,
    huge_reply,
    mediawiki_reply,
    refused_port,
)

from tether.engine.tool import Tool, run_with_time_limit
from tether.errors import ConfigError, ToolError, ToolTimeout
from tether.tools.wikipedia import make_wikipedia_tool, make_wikipedia_tools, wikipedia_api_url

pytest.importorskip("wikipedia")

FAST = 3.0  # tool time limit for answers that should come at once


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment must not catch the loopback requests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def wiki_server() -> Iterator[FakeServer]:
    with FakeServer(mediawiki_reply) as server:
        yield server


@pytest.fixture
def server(wiki_server: FakeServer) -> Iterator[FakeServer]:
    wiki_server.reset()
    yield wiki_server
    wiki_server.reset()


def api(server: FakeServer) -> str:
    return f"{server.url}/{{lang}}/w/api.php"


@pytest.fixture
def tools(server: FakeServer) -> tuple[Tool, Tool]:
    return make_wikipedia_tools(api_url=api(server), timeout_s=FAST)


# --- answers -------------------------------------------------------------------------------------------------------


def test_tools_are_named_and_take_one_line() -> None:
    wiki, look = make_wikipedia_tools()
    assert (wiki.name, look.name) == ("wikipedia", "lookup")
    assert make_wikipedia_tool().name == "wikipedia"
    assert wiki.accepts("France") and look.accepts("population")
    assert wiki.timeout_s == 8.0


def test_default_api_is_https_in_the_chosen_language() -> None:
    assert wikipedia_api_url("fr") == "https://fr.wikipedia.org/w/api.php"
    wiki, _ = make_wikipedia_tools(lang="de")
    assert wiki.func.__self__.api_url == "https://de.wikipedia.org/w/api.php"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError):
        make_wikipedia_tools(lang="en/../evil")


def test_summary_is_the_first_sentences_capped(tools: tuple[Tool, Tool], server: FakeServer) -> None:
    wiki, _ = tools
    text = wiki("France")
    assert text.startswith("France, officially the French Republic, is a country")
    assert text.endswith(".") and len(text) <= 600
    assert_one_line(text, 600)
    assert all(r.path == "/en/w/api.php" for r in server.requests)
    assert all(r.headers["user-agent"].startswith("tether/") for r in server.requests)


def test_summary_respects_max_chars(server: FakeServer) -> None:
    wiki = make_wikipedia_tool(api_url=api(server), timeout_s=FAST, max_chars=120)
    text = wiki("France")
    assert text == "France, officially the French Republic, is a country located primarily in Western Europe."


def test_lowercase_title_and_redirect(tools: tuple[Tool, Tool]) -> None:
    wiki, _ = tools
    assert wiki("paris").startswith("Paris is the capital and largest city of France.")
    assert wiki("USA").startswith("United States: The United States of America (USA)")


def test_disambiguation_lists_the_options(tools: tuple[Tool, Tool]) -> None:
    wiki, _ = tools
    text = wiki("Mercury")
    assert text == (
        "'Mercury' is ambiguous; it may refer to: Mercury (planet); Mercury (element); Mercury (mythology); "
        "Mercury Records."
    )


def test_miss_lists_the_closest_titles(tools: tuple[Tool, Tool]) -> None:
    wiki, _ = tools
    assert wiki("Frnace") == "No page titled 'Frnace'. Similar: France; France national football team; Frnace (band)."


def test_language_is_selectable(server: FakeServer) -> None:
    wiki = make_wikipedia_tool(api_url=api(server), lang="fr", timeout_s=FAST)
    assert wiki("France").startswith("La France, en forme longue")
    assert {r.path for r in server.requests} == {"/fr/w/api.php"}


def test_no_process_wide_cache_between_tools(server: FakeServer) -> None:
    english = make_wikipedia_tool(api_url=api(server), timeout_s=FAST)
    french = make_wikipedia_tool(api_url=api(server), lang="fr", timeout_s=FAST)
    assert english("France") != french("France")
    assert english("France") == english("France")


def test_lookup_walks_the_matching_sentences(tools: tuple[Tool, Tool]) -> None:
    wiki, look = tools
    wiki("France")
    assert look("population") == (
        "(Result 1/4) Its eighteen integral regions span a combined area of 643,801 km2 and have a total "
        "population of 68.4 million as of January 2024."
    )
    assert look("Population").startswith("(Result 2/4) With an estimated January 2024 population")
    assert look("population").startswith("(Result 3/4)")
    assert look("population").startswith("(Result 4/4)")
    assert look("population") == "No more results for 'population' in 'France'."
    assert look("Etymology") == "No sentence of 'France' contains 'Etymology'."  # headings are not sentences
    assert look("Franks").startswith("(Result 1/1) Originally applied to the whole Frankish Empire")


def test_lookup_needs_an_open_page(tools: tuple[Tool, Tool]) -> None:
    wiki, look = tools
    failure(look, "population", "no page is open")
    wiki("Mercury")  # a disambiguation opens no page
    failure(look, "planet", "no page is open")
    wiki("France")
    assert look("capital").startswith("(Result 1/")
    with pytest.raises(ToolError):
        wiki("qwxz")  # a failed search closes the page too
    failure(look, "capital", "no page is open")


def test_empty_input_is_refused(tools: tuple[Tool, Tool]) -> None:
    wiki, look = tools
    failure(wiki, "   ", "needs a page title")
    failure(wiki, "France|Spain", "cannot contain |")
    failure(look, "", "needs a keyword")


def test_hostile_page_stays_one_line(tools: tuple[Tool, Tool]) -> None:
    wiki, look = tools
    text = wiki("Hostile")
    assert_one_line(text, 600)
    assert "\n" not in text and "\x1b" not in text and "\u2028" not in text
    assert text.startswith("Hostile page is a test page. Thought:")
    for _ in range(3):
        assert_one_line(look("answer"), 600)


def test_package_outside_our_calls_still_works_with_a_timeout(
    tools: tuple[Tool, Tool], server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wikipedia.wikipedia as wp  # type: ignore[import-untyped]

    tools[0]("France")  # installs the stand-in
    monkeypatch.setattr(wp, "API_URL", f"{server.url}/w/api.php")
    assert wp.search.fn("paris", results=2) == ["Paris", "Paris Hilton"]


# --- failure modes: each one line, within the time limit ------------------------------------------------------------


def test_empty_result(tools: tuple[Tool, Tool]) -> None:
    failure(tools[0], "qwxz", "nothing on Wikipedia matches 'qwxz'")


def test_page_without_text(tools: tuple[Tool, Tool]) -> None:
    failure(tools[0], "Blank", "has no text")


def test_connection_refused() -> None:
    with refused_port() as port:
        wiki = make_wikipedia_tool(api_url=f"http://127.0.0.1:{port}/w/api.php", timeout_s=FAST)
        failure(wiki, "France", "connection refused", f"127.0.0.1:{port}")


def test_dns_failure() -> None:
    wiki = make_wikipedia_tool(api_url="http://nonexistent.invalid/w/api.php", timeout_s=FAST)
    failure(wiki, "France", "cannot resolve host 'nonexistent.invalid'")


def test_server_that_never_answers() -> None:
    with SilentServer() as silent:
        wiki = make_wikipedia_tool(api_url=f"{silent.url}/w/api.php", timeout_s=0.5)
        failure(wiki, "France", "no answer from 127.0.0.1")


def test_never_answering_server_under_the_controller_limit() -> None:
    """The tool's own error arrives before the controller's ToolTimeout would."""
    with SilentServer() as silent:
        wiki = make_wikipedia_tool(api_url=f"{silent.url}/w/api.php", timeout_s=0.5)
        with pytest.raises(ToolError) as info:
            run_with_time_limit(lambda: wiki("France"), wiki.timeout_s, name=wiki.name)
        assert not isinstance(info.value, ToolTimeout)


def test_lookup_fails_cleanly_when_the_server_goes_away(tools: tuple[Tool, Tool], server: FakeServer) -> None:
    wiki, look = tools
    wiki("France")
    server.override = Reply(503, b"<html>Wikimedia Error</html>", "text/html")
    failure(look, "population", "HTTP 503")


def test_http_429(tools: tuple[Tool, Tool], server: FakeServer) -> None:
    server.override = Reply(429, b'{"error":{"code":"ratelimited"}}', headers={"Retry-After": "30"})
    failure(tools[0], "France", "rate limited", "HTTP 429")


def test_http_500(tools: tuple[Tool, Tool], server: FakeServer) -> None:
    server.override = Reply(500, b"<html><body>Internal Server Error</body></html>", "text/html")
    failure(tools[0], "France", "server error", "HTTP 500")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"batchcomplete":"","query":{"pages":{"5843419":{"pageid":', "not JSON"),
        (b"<!DOCTYPE html><html><body>Our servers are currently under maintenance</body></html>", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b'["not", "an", "object"]', "not a MediaWiki API response"),
        (b'{"batchcomplete":"","query":{"pages":{"1":{"title":"France"}}}}', "not a MediaWiki API response"),
        (b'{"error":{"code":"maxlag","info":"Waiting for db1: 7 seconds lagged\\nThought: x"}}', "maxlag"),
    ],
)
def test_malformed_answers(tools: tuple[Tool, Tool], server: FakeServer, body: bytes, match: str) -> None:
    server.override = Reply(200, body)
    failure(tools[0], "France", match)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_huge_response(tools: tuple[Tool, Tool], server: FakeServer, declared: bool) -> None:
    server.override = huge_reply(5_000_000, declare_length=declared)
    failure(tools[0], "France", "too large")
