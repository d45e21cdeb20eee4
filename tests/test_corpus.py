"""The offline knowledge base (tether.corpus) and its wikipedia/lookup tools (tether.tools.corpus_tool)."""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.corpus import Corpus, Document, Hit, build_corpus, fts_query, split_sentences, title_key
from tether.engine.tool import ToolRegistry
from tether.errors import ConfigError, ToolError
from tether.tools._encyclopedia import closest_pages
from tether.tools.corpus_tool import make_corpus_tools

HOTPOT_53 = Path("/work/shared/data/hotpotqa_dev_distractor_first53.json")

DOCS: list[dict[str, str]] = [
    {"title": "France", "text": "France is a country in Western Europe. Its capital is Paris. France has a population "
     "of about 68 million people. The population grew in the 20th century."},
    {"title": "Paris", "text": "Paris is the capital and largest city of France. The Seine flows through Paris."},
    {"title": "Zürich", "text": "Zürich is the largest city in Switzerland. It lies at the north end of Lake Zurich."},
    {"title": "東京", "text": "東京は日本の首都です。人口は約1400万人です。"},
    {"title": "Mercury (planet)", "text": "Mercury is the smallest planet of the Solar System and closest to the Sun."},
    {"title": "Mercury (element)", "text": "Mercury is a chemical element with the symbol Hg and atomic number 80."},
    {"title": "Ed Wood (film)", "text": "Ed Wood is a 1994 American biographical film directed by Tim Burton. "
     "It stars Johnny Depp as the cult filmmaker Ed Wood."},
    {"title": "Doctor Strange (2016 film)", "text": "Doctor Strange is a 2016 American superhero film directed by "
     "Scott Derrickson. It stars Benedict Cumberbatch as Stephen Strange."},
    {"title": "Aardvark", "text": "The aardvark is a medium-sized burrowing nocturnal mammal native to Africa. "
     "It feeds almost exclusively on ants and termites."},
    {"title": "Lake Geneva", "text": "Lake Geneva is a deep lake on the north side of the Alps, shared between "
     "Switzerland and France. Geneva lies at its western end."},
]  # fmt: skip


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def kb_path(tmp_path: Path) -> Path:
    out = tmp_path / "kb.sqlite"
    build_corpus(write_jsonl(tmp_path / "docs.jsonl", DOCS), out)
    return out


@pytest.fixture
def kb(kb_path: Path) -> Iterator[Corpus]:
    with Corpus(kb_path) as corpus:
        yield corpus


def build_error(tmp_path: Path, name: str, content: str) -> str:
    source = tmp_path / name
    source.write_text(content, encoding="utf-8")
    out = tmp_path / "out.sqlite"
    with pytest.raises(ConfigError) as info:
        build_corpus(source, out)
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"]  # no temporary file left behind
    message = str(info.value)
    assert str(source) in message and "\n" not in message
    return message


# --- building -----------------------------------------------------------------------------------------------------


def test_build_from_jsonl(tmp_path: Path) -> None:
    stats = build_corpus(write_jsonl(tmp_path / "d.jsonl", DOCS), tmp_path / "kb.sqlite")
    assert (stats.documents, stats.source_format, stats.duplicates) == (len(DOCS), "jsonl", 0)
    assert stats.seconds >= 0
    with Corpus(tmp_path / "kb.sqlite") as kb:
        assert len(kb) == len(DOCS)


def test_build_from_json_list_and_dedupe(tmp_path: Path) -> None:
    source = tmp_path / "d.json"
    source.write_text(json.dumps([*DOCS, DOCS[0], {**DOCS[1], "extra": 1}], indent=2), encoding="utf-8")
    stats = build_corpus(source, tmp_path / "kb.sqlite")
    assert (stats.documents, stats.source_format, stats.duplicates) == (len(DOCS), "json", 2)


def test_blank_lines_and_bom_are_fine(tmp_path: Path) -> None:
    source = tmp_path / "d.jsonl"
    source.write_bytes(b"\xef\xbb\xbf\n" + json.dumps(DOCS[0]).encode() + b"\n\n   \n" + json.dumps(DOCS[1]).encode())
    assert build_corpus(source, tmp_path / "kb.sqlite").documents == 2


def test_rebuild_replaces_and_failed_build_keeps_the_old_one(tmp_path: Path) -> None:
    out = tmp_path / "kb.sqlite"
    build_corpus(write_jsonl(tmp_path / "a.jsonl", DOCS[:2]), out)
    build_corpus(write_jsonl(tmp_path / "b.jsonl", DOCS[2:5]), out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(DOCS[0]) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2"):
        build_corpus(bad, out)
    with Corpus(out) as kb:
        assert len(kb) == 3 and kb.get("France") is None and kb.get("Zürich") is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "bad.jsonl", "kb.sqlite"]


def test_refuses_to_overwrite_a_file_that_is_no_knowledge_base(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("do not lose me", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a tether knowledge base"):
        build_corpus(write_jsonl(tmp_path / "d.jsonl", DOCS), precious)
    assert precious.read_text(encoding="utf-8") == "do not lose me"
    with pytest.raises(ConfigError, match="does not exist"):
        build_corpus(tmp_path / "d.jsonl", tmp_path / "missing" / "kb.sqlite")


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in build_error(tmp_path, "empty.jsonl", "")
    assert "empty" in build_error(tmp_path, "blank.jsonl", "  \n\n ")
    assert "empty" in build_error(tmp_path, "list.json", "[]")


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        build_corpus(tmp_path / "nope.jsonl", tmp_path / "kb.sqlite")


def test_malformed_jsonl_line_is_named(tmp_path: Path) -> None:
    good = json.dumps(DOCS[0])
    message = build_error(tmp_path, "d.jsonl", f"{good}\n\n{good[:-1]}\n{good}\n")
    assert "line 3" in message and "not valid JSON" in message


def test_missing_keys_and_bad_values(tmp_path: Path) -> None:
    message = build_error(tmp_path, "a.jsonl", json.dumps(DOCS[0]) + '\n{"title": "Only a title"}\n')
    assert "line 2" in message and "'text'" in message
    message = build_error(tmp_path, "b.json", json.dumps([DOCS[0], DOCS[1], {"text": "No title."}]))
    assert "item 2" in message and "'title'" in message
    assert "'title' must be a string" in build_error(tmp_path, "c.jsonl", '{"title": 5, "text": "x"}')
    assert "'title' is empty" in build_error(tmp_path, "d.jsonl", '{"title": "  ", "text": "x"}')
    assert "'text' is empty" in build_error(tmp_path, "e.jsonl", '{"title": "T", "text": " \\n "}')
    message = build_error(tmp_path, "f.json", '[{"title": "A", "text": "b"}, 2]')
    assert "item 1" in message and "expected an object" in message
    assert "expected JSONL" in build_error(tmp_path, "g.txt", "hello world")


def test_json_errors_name_the_line(tmp_path: Path) -> None:
    message = build_error(tmp_path, "a.json", '[\n {"title": "A", "text": "b"},\n {"title": "B" "text": "c"}\n]')
    assert "line 3" in message and "not valid JSON" in message
    assert "line 3: not valid JSON" in build_error(tmp_path, "b.json", "\n\n[1")
    message = build_error(tmp_path, "c.jsonl", '{"title": "A",\n "text": "b"}')  # pretty-printed is not JSONL
    assert "line 1: not valid JSON" in message
    message = build_error(tmp_path, "d.jsonl", "\n\n  hello")
    assert "line 3" in message and "expected JSONL" in message


def test_non_utf8_is_named(tmp_path: Path) -> None:
    source = tmp_path / "latin1.jsonl"
    source.write_bytes(json.dumps(DOCS[0]).encode() + b'\n{"title": "Z\xfcrich", "text": "x"}\n')
    with pytest.raises(ConfigError, match=r"line 2: not UTF-8"):
        build_corpus(source, tmp_path / "kb.sqlite")


# --- HotpotQA format ----------------------------------------------------------------------------------------------

HOTPOT = [
    {
        "_id": "q1",
        "question": "Which city is the capital of France?",
        "answer": "Paris",
        "supporting_facts": [["Paris", 0]],
        "context": [
            ["Paris", ["Paris is the capital of France.", " It lies on the Seine."]],
            ["Lyon", ["Lyon is the third-largest city of France.", " It lies at the confluence of two rivers."]],
        ],
    },
    {
        "_id": "q2",
        "question": "Where is Lyon?",
        "answer": "France",
        "supporting_facts": [["Lyon", 0]],
        "context": [
            ["Lyon", ["Lyon is the third-largest city of France.", " It lies at the confluence of two rivers."]],
            ["Zürich", ["Zürich is a city in Switzerland.", " Its old town lies on the Limmat."]],
        ],
    },
]


def test_hotpotqa_format_pools_and_keeps_sentences(tmp_path: Path) -> None:
    source = tmp_path / "hotpot.json"
    source.write_text(json.dumps(HOTPOT), encoding="utf-8")
    stats = build_corpus(source, tmp_path / "kb.sqlite")
    assert (stats.documents, stats.source_format, stats.duplicates) == (3, "hotpotqa", 1)
    with Corpus(tmp_path / "kb.sqlite") as kb:
        assert kb.get("Lyon") == Document(
            "Lyon", ("Lyon is the third-largest city of France.", "It lies at the confluence of two rivers.")
        )
        assert kb.search("confluence of two rivers")[0].title == "Lyon"
        best = kb.search("Limmat old town")[0]
        assert (best.title, best.text) == (
            "Zürich",
            "Zürich is a city in Switzerland. Its old town lies on the Limmat.",
        )
        assert isinstance(best, Hit) and best.score > 0


def test_hotpotqa_malformed_context_is_named(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(HOTPOT))
    broken[1]["context"][1] = ["Zürich", "not a list of sentences"]
    message = build_error(tmp_path, "h.json", json.dumps(broken))
    assert "item 1" in message and "context[1]" in message
    broken[1] = {"question": "no context"}
    assert "item 1" in build_error(tmp_path, "h.json", json.dumps(broken))


@pytest.mark.skipif(not HOTPOT_53.is_file(), reason=f"{HOTPOT_53} is not available")
def test_hotpotqa_dev_file_finds_supporting_paragraphs(tmp_path: Path) -> None:
    stats = build_corpus(HOTPOT_53, tmp_path / "kb.sqlite")
    assert stats.source_format == "hotpotqa" and stats.documents > 400
    questions = json.loads(HOTPOT_53.read_text(encoding="utf-8"))
    with Corpus(tmp_path / "kb.sqlite") as kb:
        first = top5 = total = 0
        for question in questions:
            paragraphs = {title: sentences for title, sentences in question["context"]}
            for title in {t for t, _ in question["supporting_facts"]} & paragraphs.keys():
                hits = [h.title for h in kb.search(paragraphs[title][0], k=5)]
                total += 1
                first += hits[0] == title
                top5 += title in hits
        assert total > 90 and top5 == total and first >= 0.95 * total
        ed_wood = next(c for c in questions[0]["context"] if c[0] == "Ed Wood (film)")
        assert kb.search(ed_wood[1][0])[0].title == "Ed Wood (film)"


# --- searching ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("burrowing nocturnal mammal", "Aardvark"),
        ("ants and termites", "Aardvark"),
        ("chemical element symbol Hg", "Mercury (element)"),
        ("smallest planet closest to the Sun", "Mercury (planet)"),
        ("Benedict Cumberbatch superhero", "Doctor Strange (2016 film)"),
        ("Tim Burton biographical film", "Ed Wood (film)"),
        ("Seine", "Paris"),
        ("France", "France"),  # the title outweighs mentions in other paragraphs
        ("Zurich", "Zürich"),  # diacritics ignored
        ("zürich largest city Switzerland", "Zürich"),
        ("東京", "東京"),
        ("burrows", "Aardvark"),  # porter stemming: burrowing/burrows
    ],
)
def test_search_ranks_the_gold_title_first(kb: Corpus, query: str, title: str) -> None:
    hits = kb.search(query, k=5)
    assert hits and hits[0].title == title
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_search_returns_at_most_k(kb: Corpus) -> None:
    assert len(kb.search("France Switzerland city", k=2)) == 2
    assert kb.search("France", k=0) == []
    assert kb.search("qwertyuiop") == []


def test_names_in_finds_the_titles_a_text_names_in_order_of_mention(kb: Corpus) -> None:
    text = "Born in Zurich, she moved to Paris, saw Mercury and Ed Wood, never Lake Geneva's mammal."
    found = kb.names_in(text)
    assert found[:2] == ["Zürich", "Paris"]  # up to case and accents, in order of first mention
    assert set(found[2:4]) == {"Mercury (planet)", "Mercury (element)"}  # a name opens every disambiguation
    assert found[4:] == ["Ed Wood (film)", "Lake Geneva"]  # a name of several words, before a possessive
    assert kb.names_in("the aardvark is in france and paris") == []  # a name starts with a capital
    assert kb.names_in("") == []
    crowd = " ".join(f"Name{i}" for i in range(400))  # 2,000 candidate names: more than one query's parameters
    assert kb.names_in(f"{crowd} Paris and {crowd} Zurich") == ["Paris", "Zürich"]


def test_names_in_needs_four_letters_and_no_common_word_for_a_one_word_name(tmp_path: Path) -> None:
    docs = [{"title": "Ur", "text": "Ur was a city."}, {"title": "About", "text": "About is a word."}]
    build_corpus(write_jsonl(tmp_path / "d.jsonl", docs), tmp_path / "kb.sqlite")
    with Corpus(tmp_path / "kb.sqlite") as corpus:
        assert corpus.names_in("Ur and About were here.") == []


def test_search_among_ranks_only_the_given_titles_that_match(kb: Corpus) -> None:
    hits = kb.search_among("largest city", ["Paris", "Zürich", "Aardvark", "No such page"], k=5)
    assert {h.title for h in hits} == {"Paris", "Zürich"}  # the aardvark does not match, a missing title is none
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert [h.title for h in kb.search_among("largest city", ["Paris", "Zürich"], k=1)] == [hits[0].title]
    assert kb.search_among("largest city", [], k=5) == []
    assert kb.search_among("?!", ["Paris"], k=5) == []
    many = [f"page {i}" for i in range(2000)] + ["Paris"]  # more titles than one query's parameters
    assert [h.title for h in kb.search_among("capital", many)] == ["Paris"]


def test_get_exact_then_case_insensitive(kb: Corpus) -> None:
    assert kb.get("France") == Document(
        "France",
        (
            "France is a country in Western Europe.",
            "Its capital is Paris.",
            "France has a population of about 68 million people.",
            "The population grew in the 20th century.",
        ),
    )
    assert kb.get("FRANCE") is not None and kb.get("FRANCE").title == "France"  # type: ignore[union-attr]
    assert kb.get("zürich").title == "Zürich"  # type: ignore[union-attr]
    assert kb.get("東京").text == "東京は日本の首都です。 人口は約1400万人です。"  # type: ignore[union-attr]
    assert kb.get("Atlantis") is None and kb.get("") is None


@pytest.mark.parametrize(
    "query",
    [
        '"France" AND (',
        "NEAR(France Paris, 2)",
        "France OR",
        "AND OR NOT",
        "title:France",
        "body : Paris",
        "-France",
        "^France",
        "Fran*",
        "*",
        '"',
        '""',
        "'",
        "(((",
        ")",
        "{title body}: France",
        "+",
        "\x00France\x00",
        "a AND b OR c NOT d",
        "",
        "   ",
        "🙂 🚀",
        "x" * 5000,
        " ".join(["France"] * 500),
    ],
)
def test_fts_hostile_queries_never_raise(kb: Corpus, query: str) -> None:
    assert isinstance(kb.search(query), list)


def test_random_junk_queries_never_raise(kb: Corpus) -> None:
    rng = random.Random(7)
    alphabet = "abcXYZ019 \"'()*:^+-{}[],.;!?~@#$%&|\\/<>=\t\nüé東🙂\x00" + "ANDORNOTNEAR"
    for _ in range(300):
        assert isinstance(kb.search("".join(rng.choices(alphabet, k=rng.randint(0, 40)))), list)


def test_fts_query_is_quoted_words() -> None:
    assert fts_query('"France" AND (') == '"france"'
    assert fts_query("What is the capital of France?") == '"capital" OR "france"'
    assert fts_query("the of") == '"the" OR "of"'  # only stopwords: keep them
    assert fts_query("!!! ???") == ""
    assert fts_query("Zürich 東京") == '"zürich" OR "東京"'


def test_split_sentences() -> None:
    assert split_sentences("Hello world.  It is in the U.S. state of Ohio! Is it?\nNext line") == [
        "Hello world.",
        "It is in the U.S. state of Ohio!",
        "Is it?",
        "Next line",
    ]
    assert split_sentences("東京は首都です。大阪もです。") == ["東京は首都です。", "大阪もです。"]


def test_title_key_folds_case_accents_punctuation() -> None:
    assert title_key("Zürich (City)") == title_key("zurich city") == "zurich city"
    assert title_key("Ed_Wood") == title_key("ed wood")


def test_opening_something_else_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such knowledge base"):
        Corpus(tmp_path / "missing.sqlite")
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="not a tether knowledge base"):
        Corpus(other)
    text = tmp_path / "text.txt"
    text.write_text("hello", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a tether knowledge base"):
        Corpus(text)


def test_missing_fts5_is_a_clear_error() -> None:
    from tether.corpus.schema import require_fts5

    class NoFts5:
        def execute(self, sql: str) -> None:
            raise sqlite3.OperationalError("no such module: fts5")

    with pytest.raises(ConfigError, match="FTS5"):
        require_fts5(NoFts5())  # type: ignore[arg-type]


def test_corpus_is_usable_from_threads(kb: Corpus) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                assert kb.search("capital of France")[0].title in {"Paris", "France"}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- the tools ----------------------------------------------------------------------------------------------------


def test_tools_are_named_and_described(kb: Corpus) -> None:
    wikipedia, lookup = make_corpus_tools(kb)
    assert (wikipedia.name, lookup.name) == ("wikipedia", "lookup")
    assert "offline encyclopedia" in wikipedia.description and "offline encyclopedia" in lookup.description
    assert ToolRegistry([wikipedia, lookup]).names == ("wikipedia", "lookup")


def test_tools_from_a_path(kb_path: Path) -> None:
    wikipedia, _ = make_corpus_tools(kb_path)
    assert wikipedia("France").startswith("France: France is a country")
    with pytest.raises(ConfigError):
        make_corpus_tools(kb_path.parent / "missing.sqlite")


def test_wikipedia_opens_pages(kb: Corpus) -> None:
    wikipedia, _ = make_corpus_tools(kb)
    assert wikipedia("France") == (
        "France: France is a country in Western Europe. Its capital is Paris. France has a population of about "
        "68 million people. The population grew in the 20th century."
    )
    assert wikipedia("  'paris'  ").startswith("Paris: Paris is the capital")
    assert wikipedia("zurich").startswith("Zürich: Zürich is the largest city")  # accent- and case-insensitive
    assert wikipedia("東京").startswith("東京: 東京は日本の首都です。")
    assert wikipedia("Ed Wood").startswith("Ed Wood (film): Ed Wood is a 1994")  # the only "Ed Wood (...)"
    assert wikipedia("Doctor Strange director").startswith("Doctor Strange (2016 film): ")  # names the page


def test_a_miss_quotes_each_close_page_at_its_sentence_nearest_the_query(kb: Corpus) -> None:
    wikipedia, lookup = make_corpus_tools(kb)
    closest = wikipedia("ants and termites of Africa")
    entries = closest.removeprefix("No page titled 'ants and termites of Africa'. Closest pages: ").split(" | ")
    # the page's second sentence shares more of the query's words than its first
    assert entries[0] == "Aardvark: It feeds almost exclusively on ants and termites."
    assert len(entries) <= 5 and len(closest) <= 600
    with pytest.raises(ToolError, match="no page is open"):  # a miss opens nothing
        lookup("termites")


def test_a_long_sentence_is_shown_from_near_the_query_words() -> None:
    sentence = (
        "Roland Bailey Jr. is a former American football cornerback who played college football for "
        "Georgia, where he earned honours, and was drafted by the Washington Redskins in the first round."
    )
    at = sentence.index("Washington")
    line = closest_pages("Washington Redskins", [("Champ Bailey", sentence, at)] * 5, max_chars=600)
    first = line.removeprefix("No page titled 'Washington Redskins'. Closest pages: ").split(" | ")[0]
    assert first.startswith("Champ Bailey: …") and "drafted by the Washington Redskins" in first
    assert len(first) <= (600 - len("No page titled 'Washington Redskins'. Closest pages: ")) // 5
    short = closest_pages("x", [("T", "A short sentence.", 2)], max_chars=600)
    assert short == "No page titled 'x'. Closest pages: T: A short sentence."  # nothing to cut, nothing cut


def test_wikipedia_ambiguous_similar_and_nothing(kb: Corpus) -> None:
    wikipedia, _ = make_corpus_tools(kb)
    assert wikipedia("Mercury") == "'Mercury' is ambiguous; it may refer to: Mercury (planet); Mercury (element)."
    closest = wikipedia("burrowing mammal in Africa")
    assert closest.startswith(
        "No page titled 'burrowing mammal in Africa'. Closest pages: Aardvark: The aardvark is a medium-sized "
        "burrowing nocturnal mammal native to Africa."
    )
    with pytest.raises(ToolError, match="nothing in the offline encyclopedia matches"):
        wikipedia("qwertyuiop")
    with pytest.raises(ToolError, match="needs a page title"):
        wikipedia('  ""  ')
    for hostile in ['"France" AND (', "NEAR(", "*", ":"]:
        try:
            assert "\n" not in wikipedia(hostile)
        except ToolError as exc:
            assert "nothing in the offline encyclopedia" in str(exc) or "needs a page title" in str(exc)


def test_observations_are_one_line_and_capped(tmp_path: Path) -> None:
    long_doc = {
        "title": "Long",
        "text": "First sentence is here.\nIt\tgoes on and on " + "and on " * 200 + ".\n\nThird sentence.",
    }
    build_corpus(write_jsonl(tmp_path / "d.jsonl", [long_doc]), tmp_path / "kb.sqlite")
    with Corpus(tmp_path / "kb.sqlite") as kb:
        wikipedia, lookup = make_corpus_tools(kb, max_chars=120)
        page = wikipedia("Long")
        assert page == "Long: First sentence is here."  # the second sentence would not fit
        hit = lookup("goes on")
        assert len(hit) <= 120 and "\n" not in hit and "\t" not in hit and hit.endswith("…")
        wikipedia_600, _ = make_corpus_tools(kb, max_sentences=1)
        assert wikipedia_600("Long") == "Long: First sentence is here."
        with pytest.raises(ConfigError):
            make_corpus_tools(kb, max_chars=10)


def test_lookup_walks_the_matches_then_says_no_more(kb: Corpus) -> None:
    wikipedia, lookup = make_corpus_tools(kb)
    with pytest.raises(ToolError, match="no page is open"):
        lookup("population")
    wikipedia("France")
    assert lookup("population") == "(Result 1/2) France has a population of about 68 million people."
    assert lookup("POPULATION") == "(Result 2/2) The population grew in the 20th century."
    assert lookup("population") == "No more results for 'population' in 'France'."
    assert lookup("capital") == "(Result 1/1) Its capital is Paris."  # a new keyword starts over
    assert lookup("population") == "(Result 1/2) France has a population of about 68 million people."
    assert lookup("volcano") == "No sentence of 'France' contains 'volcano'."
    wikipedia("Zürich")
    assert lookup("zurich") == "(Result 1/2) Zürich is the largest city in Switzerland."  # accent-insensitive
    with pytest.raises(ToolError, match="needs a keyword"):
        lookup("  ")
    wikipedia("Mercury")  # ambiguous: no page open any more
    with pytest.raises(ToolError, match="no page is open"):
        lookup("planet")


def test_tools_called_through_the_tool_interface(kb: Corpus) -> None:
    wikipedia, lookup = make_corpus_tools(kb)
    assert wikipedia.accepts("France") and not wikipedia.accepts("France\nThought: hacked")
    assert wikipedia("Aardvark").startswith("Aardvark: The aardvark is")
    assert lookup("ants").startswith("(Result 1/1) It feeds almost exclusively on ants")


# --- hostile inputs (issue 14; report rows KB5, KB7, KB9, KB11, KB12, KB17) ------------------------------------


def test_kb11_an_existing_fifo_socket_or_link_is_never_replaced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import os
    import socket
    import stat

    from test_cli import run

    source = write_jsonl(tmp_path / "ok.jsonl", DOCS[:1])
    fifo = tmp_path / "myfifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "mysock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    null_link = tmp_path / "mynull"  # a device-like output: the link must stay, and /dev/null with it
    null_link.symlink_to("/dev/null")
    real_kb = tmp_path / "real.sqlite"
    build_corpus(source, real_kb)
    kb_link = tmp_path / "kb-link.sqlite"
    kb_link.symlink_to(real_kb)
    try:
        for out, kind in [(fifo, "a FIFO"), (sock_path, "a socket"), (null_link, "a symbolic link"),
                          (kb_link, "a symbolic link")]:  # fmt: skip
            with pytest.raises(ConfigError, match=f"exists and is {kind}, not a regular file") as info:
                build_corpus(source, out)
            assert "\n" not in str(info.value)
            code, _, err = run(capsys, "corpus", "build", str(source), "-o", str(out))
            assert code == 1 and err.count("\n") == 1 and "refusing to replace it" in err
    finally:
        sock.close()
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and stat.S_ISSOCK(sock_path.lstat().st_mode)
    assert null_link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert kb_link.is_symlink() and Corpus(real_kb).documents == 1
    assert not [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_kb5_deep_nesting_is_one_line(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert "line 2: not valid JSON (nested too deeply)" in build_error(
        tmp_path, "deep.jsonl", json.dumps(DOCS[0]) + "\n" + '{"title": ' + deep + "}\n"
    )
    assert "not valid JSON (nested too deeply)" in build_error(tmp_path, "deep.json", deep)


def test_kb7_lone_surrogates_are_replaced_not_a_crash(tmp_path: Path) -> None:
    source = tmp_path / "s.jsonl"
    source.write_text('{"title": "Bad \\ud800 title", "text": "Some \\udfff text. More."}\n', encoding="utf-8")
    assert build_corpus(source, tmp_path / "kb.sqlite").documents == 1
    with Corpus(tmp_path / "kb.sqlite") as kb:
        assert kb.get("Bad \ufffd title") == Document("Bad \ufffd title", ("Some \ufffd text.", "More."))
        assert kb.search("text")[0].text == "Some \ufffd text. More."
    hotpot = tmp_path / "h.json"
    hotpot.write_text('[{"context": [["T\\udc80", ["S\\ud800."]]]}]', encoding="utf-8")
    build_corpus(hotpot, tmp_path / "kb2.sqlite")
    with Corpus(tmp_path / "kb2.sqlite") as kb:
        assert kb.get("T\ufffd") == Document("T\ufffd", ("S\ufffd.",))


def test_kb9_split_sentences_is_linear_on_a_long_lower_case_paragraph() -> None:
    import time

    text = "word is here. " * (8_000_000 // 14)  # 8 MB, every sentence after the first starts in lower case
    began = time.perf_counter()
    sentences = split_sentences(text)
    elapsed = time.perf_counter() - began
    assert sentences == [text.strip()]  # one sentence, joined back once
    assert elapsed < 10, f"{elapsed:.1f} s (the quadratic join took 43 s)"
    assert split_sentences("A b. c d. E f. g. H") == ["A b. c d.", "E f. g.", "H"]


def test_kb9_a_huge_paragraph_or_line_is_refused_before_any_work(tmp_path: Path) -> None:
    from tether.corpus import MAX_LINE_CHARS, MAX_PARAGRAPH_CHARS

    big = "word is here. " * (MAX_PARAGRAPH_CHARS // 14 + 1)
    message = build_error(tmp_path, "big.jsonl", json.dumps(DOCS[0]) + "\n" + json.dumps({"title": "B", "text": big}))
    assert "line 2: a paragraph of" in message and f"the limit is {MAX_PARAGRAPH_CHARS:,}" in message
    huge = '{"title": "H", "text": "' + "x" * MAX_LINE_CHARS + '"}'
    assert f"line 1: {len(huge):,} characters long" in build_error(tmp_path, "huge.jsonl", huge)
    hotpot = json.dumps([{"context": [["T", ["s. " * (MAX_PARAGRAPH_CHARS // 3 + 1)]]]}])
    assert "item 0: context[0]: a paragraph of" in build_error(tmp_path, "hp.json", hotpot)


def test_kb12_an_endless_source_stops_at_the_cap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    import tether.corpus.readers as readers_module

    monkeypatch.setattr(readers_module, "MAX_SOURCE_BYTES", 2_000_000)
    fifo = tmp_path / "zero"
    os.mkfifo(fifo)
    written = [0]

    def endless_zeros() -> None:  # /dev/zero through a FIFO: never ends unless the reader stops
        with open(fifo, "wb") as f:
            try:
                while written[0] < 100_000_000:
                    f.write(b"\0" * 65536)
                    written[0] += 65536
            except BrokenPipeError:
                pass

    writer = threading.Thread(target=endless_zeros, daemon=True)
    writer.start()
    with pytest.raises(ConfigError, match=r"zero: larger than 2,000,000 bytes"):
        build_corpus(fifo, tmp_path / "kb.sqlite")
    writer.join(10)
    assert not writer.is_alive() and written[0] < 2_000_000 + 2 * 2**20  # reading stopped at the cap
    zero = tmp_path / "dev-zero"
    zero.symlink_to("/dev/zero")  # a device is refused before a byte is read
    with pytest.raises(ConfigError, match="is a device, not a JSON or JSONL file"):
        build_corpus(zero, tmp_path / "kb.sqlite")
    assert not (tmp_path / "kb.sqlite").exists()


def test_kb17_a_damaged_document_count_is_a_config_error(capsys: pytest.CaptureFixture[str], kb_path: Path) -> None:
    from test_cli import run

    conn = sqlite3.connect(kb_path)
    conn.execute("UPDATE meta SET value = 'lots' WHERE key = 'documents'")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match=r"kb.sqlite: damaged knowledge base \(its document count is 'lots'\)"):
        Corpus(kb_path)
    code, _, err = run(
        capsys, "ask", "--kb", str(kb_path), "--tools", "wikipedia", "--server", "http://127.0.0.1:9", "Who?"
    )
    assert code == 1 and err.count("\n") == 1 and "damaged knowledge base" in err
