"""preference_prompts: the first user message of each pair across row shapes, md5 ids, pair counts across
sources, drops, caps, local files and the (streamed) Hub path, resuming, byte-identical reruns, config errors
and the card. The pairs are written by the tests."""

import hashlib
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vs_sonar_dataset.core.errors import ShardError, UserError
from vs_sonar_dataset.core.settings import parse_table
from vs_sonar_dataset.core.shards import MANIFEST, read_manifest, read_table
from vs_sonar_dataset.sources import preference_prompts as pp
from vs_sonar_dataset.sources.base import SourceContext

CONTEXT = SourceContext(progress=False)
EGG = "How do I boil an egg?"
PERU = "What is the capital of Peru?"
HAIKU = "Write a haiku about rain."
REBASE = "What does `git rebase` do?"


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


HH_ROWS = [
    # conversation shape, multi-turn: the FIRST user message is the prompt, not the last
    {"prefix": {"messages": [user(EGG), bot("Simmer it for nine minutes."), user("And for a soft yolk?")]},
     "chosen": {"messages": [bot("Six minutes.")]}, "rejected": {"messages": [bot("Fry it.")]}, "src": "helpful"},
    {"prefix": [{"role": "system", "content": "Be brief."}, user("Tell me a joke about cats.")],
     "chosen": [bot("...")], "rejected": [bot("No.")], "src": "helpful"},
    {"prefix": {"messages": [user(EGG), bot("Nine minutes."), user("What about quail eggs?")]},
     "chosen": [bot("Two and a half minutes.")], "rejected": [bot("Same.")], "src": "helpful"},
    # HH-RLHF's raw form: no prompt, the conversation inside `chosen`
    {"chosen": f"\n\nHuman: {PERU}\n\nAssistant: Lima.\n\nHuman: And its population?\n\nAssistant: About ten million.",
     "rejected": f"\n\nHuman: {PERU}\n\nAssistant: Lima.\n\nHuman: And its population?\n\nAssistant: Unknown."},
    {"prefix": {"messages": [{"role": "system", "content": "Hi"}, bot("Hello!")]}, "chosen": [], "rejected": []},
    {"prefix": {"messages": [user("   "), bot("?"), user("Sorry, I meant to ask about tides.")]}},
    {"prefix": "not a message list", "chosen": "x", "rejected": "y"},
    {"prefix": {"messages": [{"role": "user", "content": None}]}},
    # a prefix that ends with the assistant: the pair answers no user turn
    {"prefix": {"messages": [user("Where is Lima?"), bot("In Peru.")]}, "chosen": [bot("Yes.")], "rejected": []},
]
UF_ROWS = [
    {"prompt": HAIKU, "chosen": [user(HAIKU), bot("Grey sky...")], "rejected": [user(HAIKU), bot("Rain.")]},
    {"prompt": EGG, "chosen": [user(EGG), bot("Boil it.")], "rejected": [user(EGG), bot("Bake it.")]},
    {"prompt": "", "chosen": [user(""), bot("?")], "rejected": [user(""), bot("!")]},
]
SE_ROWS = [
    {"prompt": REBASE, "chosen": "It replays commits.", "rejected": "It deletes them."},
    {"prompt": REBASE, "chosen": "It moves a branch.", "rejected": "Nothing."},
    {"prompt": HAIKU, "chosen": "Drops on the window", "rejected": "No."},
    {"prompt": "Never read: beyond the cap.", "chosen": "a", "rejected": "b"},
    {"prompt": "Never read either.", "chosen": "a", "rejected": "b"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def pairs(tmp_path):
    return {"hh": write_jsonl(tmp_path / "hh.jsonl", HH_ROWS), "uf": write_jsonl(tmp_path / "uf.jsonl", UF_ROWS),
            "se": write_jsonl(tmp_path / "se.jsonl", SE_ROWS)}


def config(pairs, se_cap=3, **values):
    sources = [{"name": "hh-rlhf", "files": [pairs["hh"]]}, {"name": "ultrafeedback", "files": [pairs["uf"]]},
               {"name": "stack-exchange", "files": [pairs["se"]], "max_pairs": se_cap}]
    return parse_table(pp.Config, {"kind": "preference_prompts", "sources": sources, **values}, "[source]")


def md5_16(text):
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:16]


def test_first_user_messages_across_shapes_and_sources(pairs, tmp_path):
    manifest = pp.run(config(pairs), tmp_path / "out", CONTEXT)
    table = read_table(tmp_path / "out", "candidates")
    assert table.schema.equals(pp.schema(config(pairs)))
    rows = table.to_pylist()
    assert [r["text"] for r in rows] == [EGG, "Tell me a joke about cats.", PERU, HAIKU, REBASE]
    by_text = {r["text"]: r for r in rows}
    assert all(r["id"] == md5_16(r["text"]) for r in rows)
    egg = by_text[EGG]
    assert (egg["source"], egg["pair_count"], egg["sources"]) == ("hh-rlhf", 3, ["hh-rlhf", "ultrafeedback"])
    assert json.loads(egg["prefix"]) == [user(EGG), bot("Simmer it for nine minutes."), user("And for a soft yolk?")]
    assert egg["prefix"] == json.dumps(HH_ROWS[0]["prefix"]["messages"], sort_keys=True, ensure_ascii=False)
    assert json.loads(by_text["Tell me a joke about cats."]["prefix"])[0]["role"] == "system"
    assert json.loads(by_text[PERU]["prefix"]) == [user(PERU), bot("Lima."), user("And its population?")]
    haiku = by_text[HAIKU]
    assert (haiku["source"], haiku["pair_count"], haiku["sources"]) == ("ultrafeedback", 2,
                                                                       ["stack-exchange", "ultrafeedback"])
    assert json.loads(haiku["prefix"]) == [user(HAIKU)]
    assert (by_text[REBASE]["pair_count"], by_text[REBASE]["sources"]) == (2, ["stack-exchange"])
    assert manifest.stats == {
        "pairs_read": {"hh-rlhf": 9, "ultrafeedback": 3, "stack-exchange": 3}, "pairs_kept": 9,
        "duplicate_pairs": 4, "multi_turn": 3, "padded": 0, "rows": 5,
        "rows_first_seen": {"hh-rlhf": 3, "ultrafeedback": 1, "stack-exchange": 1},
        "dropped": {"malformed": 2, "no_user_message": 1, "last_turn_not_user": 1, "empty_message": 2},
        "capped": ["stack-exchange"]}
    assert manifest.complete and manifest.text_column == "text"
    assert json.loads((tmp_path / "out" / pp.SUMMARY).read_text())["capped"] == ["stack-exchange"]


def test_a_cap_that_is_not_reached_is_not_reported(pairs, tmp_path):
    manifest = pp.run(config(pairs, se_cap=5), tmp_path / "out", CONTEXT)
    assert manifest.stats["capped"] == [] and manifest.stats["pairs_read"]["stack-exchange"] == 5
    assert "Never read either." in read_table(tmp_path / "out").column("text").to_pylist()


def test_prompts_are_keyed_without_surrounding_whitespace(tmp_path):
    """A prompt padded with spaces or line breaks (UltraFeedback has some) is the same prompt; case and inner
    whitespace still tell prompts apart."""
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hello there"}, {"prompt": "Hello there "},
                                              {"prompt": "hello there"}, {"prompt": "\nHello there\n"},
                                              {"prompt": "Hello  there"}])
    manifest = pp.run(parse_table(pp.Config, {"sources": [{"name": "p", "files": [path]}]}, "[source]"),
                      tmp_path / "out", CONTEXT)
    rows = read_table(tmp_path / "out").to_pylist()
    assert [(r["text"], r["pair_count"]) for r in rows] == [("Hello there", 3), ("hello there", 1),
                                                            ("Hello  there", 1)]
    assert rows[0]["id"] == hashlib.md5(b"Hello there").hexdigest()[:16] and manifest.stats["padded"] == 2


def test_the_last_user_turn_is_the_prompt_when_asked(pairs, tmp_path):
    pp.run(config(pairs, prompt_turn="last"), tmp_path / "out", CONTEXT)
    texts = read_table(tmp_path / "out").column("text").to_pylist()
    assert texts[:4] == ["And for a soft yolk?", "Tell me a joke about cats.", "What about quail eggs?",
                         "And its population?"]
    with pytest.raises(UserError, match="prompt_turn"):
        config(pairs, prompt_turn="middle")


def test_hh_raw_prompt_strings_are_split_into_turns():
    assert pp.prompt_messages({"prompt": "\n\nHuman: Hi there\n\nAssistant:"}, "x") == [user("Hi there")]
    assert pp.prompt_messages({"prompt": "Plain question"}, "x") == [user("Plain question")]
    assert pp.prompt_messages({"chosen": "no markers"}, "x") is None
    assert pp.prompt_messages({"chosen": [user("a"), bot("b"), user("c"), bot("d")]}, "x") == [user("a"), bot("b"),
                                                                                             user("c")]


def test_parquet_gives_the_same_rows_as_jsonl(pairs, tmp_path):
    pq.write_table(pa.Table.from_pylist(SE_ROWS), tmp_path / "se.parquet")
    for name, path in (("jsonl", pairs["se"]), ("parquet", str(tmp_path / "se.parquet"))):
        pp.run(parse_table(pp.Config, {"sources": [{"name": "se", "files": [path], "max_pairs": 3}]}, "[source]"),
               tmp_path / name, CONTEXT)
    assert read_table(tmp_path / "jsonl").equals(read_table(tmp_path / "parquet"))


def test_an_unknown_row_shape_names_the_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"prompt": "fine"}, {"title": "no known field", "body": "x"}])
    cfg = parse_table(pp.Config, {"sources": [{"name": "odd", "files": [path]}]}, "[source]")
    with pytest.raises(UserError, match=r"odd\.jsonl:2: a pair needs a `prefix`.*\['body', 'title'\]"):
        pp.run(cfg, tmp_path / "out", CONTEXT)


def test_stack_exchange_html_questions_become_plain_text():
    html = ("<p>How do I undo a commit &amp; keep my changes?</p>\n\n<pre><code>git reset --soft HEAD~1\n"
            "</code></pre>\n<p>I tried <code>git revert</code>.</p>\n")
    assert pp.prompt_messages({"question": html}, "x") == [
        user("How do I undo a commit & keep my changes?\n\ngit reset --soft HEAD~1\n\nI tried git revert.")]
    assert pp.html_text("no markup at all") == "no markup at all"


def test_stack_exchange_questions_are_user_messages(tmp_path):
    rows = [{"qid": 1, "question": "How do I undo a commit?", "answers": [{"text": "a", "pm_score": 3}]},
            {"qid": 2, "question": "How do I undo a commit?", "answers": []},
            {"qid": 3, "question": "  ", "answers": []}]
    path = write_jsonl(tmp_path / "se.jsonl", rows)
    manifest = pp.run(parse_table(pp.Config, {"sources": [{"name": "se", "files": [path]}]}, "[source]"),
                      tmp_path / "out", CONTEXT)
    table = read_table(tmp_path / "out")
    assert table.column("text").to_pylist() == ["How do I undo a commit?"]
    assert table.column("pair_count").to_pylist() == [2] and manifest.stats["dropped"]["empty_message"] == 1


@pytest.mark.parametrize("content,message", [("{not json\n", "not valid JSON"), ("[1]\n", "JSON object per line")])
def test_bad_lines_are_user_errors(tmp_path, content, message):
    (tmp_path / "bad.jsonl").write_text(content)
    cfg = parse_table(pp.Config, {"sources": [{"name": "b", "files": [str(tmp_path / "bad.jsonl")]}]}, "[source]")
    with pytest.raises(UserError, match=message):
        pp.run(cfg, tmp_path / "out", CONTEXT)


def test_hub_sources_are_streamed_and_the_cap_stops_reading(monkeypatch, tmp_path):
    calls, pulled = [], []

    def stream():
        for i in range(1000):
            pulled.append(i)
            yield {"prompt": f"Question number {i}?", "chosen": "a", "rejected": "b"}

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split, kwargs))
        return stream()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    cfg = parse_table(pp.Config, {"sources": [{"name": "se", "dataset": "HuggingFaceH4/stack-exchange-preferences",
                                               "max_pairs": 10}]}, "[source]")
    manifest = pp.run(cfg, tmp_path / "out", CONTEXT)
    assert calls == [("HuggingFaceH4/stack-exchange-preferences", None, "train", {"streaming": True})]
    assert len(pulled) == 11 and manifest.rows == 10 and manifest.stats["capped"] == ["se"]


def test_hub_failures_are_one_line(monkeypatch, tmp_path):
    def load_dataset(*args, **kwargs):
        raise FileNotFoundError("Dataset 'org/missing' doesn't exist on the Hub\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    cfg = parse_table(pp.Config, {"sources": [{"name": "m", "dataset": "org/missing"}]}, "[source]")
    with pytest.raises(UserError, match=r"could not load org/missing \(default, train\)") as error:
        pp.run(cfg, tmp_path / "out", CONTEXT)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("sources,message", [
    ([{"name": "a", "dataset": "org/x", "files": ["a.jsonl"]}], "sources.0.files: give exactly one of dataset"),
    ([{"name": "a"}], "give exactly one of dataset"),
    ([{"name": "a", "dataset": "org/x", "shuffle": True}], "sources.0.shuffle: unknown key"),
    ([{"name": "a", "dataset": "org/x", "max_pairs": "10"}], "sources.0.max_pairs: Input should be a valid integer"),
    ([{"name": "a", "dataset": "org/x", "max_pairs": 0}], "greater than or equal to 1"),
    ([{"dataset": "org/x"}], "sources.0.name: Field required"),
    ([], "sources: List should have at least 1 item"),
    ([{"name": "a", "dataset": "org/x"}, {"name": "a", "dataset": "org/y"}], "source names must differ"),
    ([{"name": "a", "dataset": "preference-sample/nope"}], "the preference samples are"),
])
def test_config_errors_are_one_line(sources, message):
    with pytest.raises(UserError) as error:
        parse_table(pp.Config, {"kind": "preference_prompts", "sources": sources}, "[source]")
    assert message in str(error.value) and str(error.value).startswith("[source]: ")
    assert "\n" not in str(error.value)


def test_unknown_top_level_key_and_wrong_kind(pairs):
    with pytest.raises(UserError, match="dedup: unknown key"):
        parse_table(pp.Config, {"sources": [{"name": "a", "dataset": "org/x"}], "dedup": True}, "[source]")
    with pytest.raises(UserError, match="kind"):
        parse_table(pp.Config, {"kind": "text_corpus", "sources": [{"name": "a", "dataset": "org/x"}]}, "[source]")


def test_same_input_gives_byte_identical_shards(pairs, tmp_path):
    for out in ("a", "b"):
        pp.run(config(pairs), tmp_path / out, CONTEXT)
    first, second = (tmp_path / "a" / "shard-00000.parquet"), (tmp_path / "b" / "shard-00000.parquet")
    assert first.read_bytes() == second.read_bytes()


def test_a_complete_output_is_left_alone_and_an_incomplete_one_redone(pairs, tmp_path):
    out = tmp_path / "out"
    pp.run(config(pairs), out, CONTEXT)
    shard = out / "shard-00000.parquet"
    stamp, original = shard.stat().st_mtime_ns, shard.read_bytes()
    pp.run(config(pairs), out, CONTEXT)
    assert shard.stat().st_mtime_ns == stamp
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["complete"], manifest["shards"] = False, []
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / ".shard-00001.parquet.tmp").write_bytes(b"partial")
    pp.run(config(pairs), out, CONTEXT)
    assert read_manifest(out).complete and shard.read_bytes() == original
    assert not (out / ".shard-00001.parquet.tmp").exists()


def test_a_complete_output_of_other_config_or_inputs_is_refused(pairs, tmp_path):
    out = tmp_path / "out"
    pp.run(config(pairs), out, CONTEXT)
    with pytest.raises(ShardError, match="another configuration"):
        pp.run(config(pairs, se_cap=4), out, CONTEXT)
    write_jsonl(tmp_path / "uf.jsonl", UF_ROWS[:2])
    with pytest.raises(ShardError, match="another configuration"):
        pp.run(config(pairs), out, CONTEXT)


def test_card_lists_each_known_dataset_once_with_license_and_citation():
    cfg = parse_table(pp.Config, {"sources": [
        {"name": "hh-rlhf", "dataset": "Anthropic/hh-rlhf"},
        {"name": "hh-rlhf-test", "dataset": "Anthropic/hh-rlhf", "split": "test"},
        {"name": "ultrafeedback", "dataset": "HuggingFaceH4/ultrafeedback_binarized", "split": "train_prefs"},
        {"name": "stack-exchange", "dataset": "HuggingFaceH4/stack-exchange-preferences", "max_pairs": 100_000},
        {"name": "other", "dataset": "org/prefs"},
        {"name": "mine", "files": ["mine.jsonl"]}]}, "[source]")
    info = pp.card(cfg, {"rows": 10, "pairs_kept": 12, "dropped": {"empty_message": 1}, "capped": ["stack-exchange"]})
    licenses = {d["name"]: d["license"] for d in info.datasets}
    assert licenses == {"Anthropic HH-RLHF": "mit", "UltraFeedback (binarized)": "mit",
                        "Stack Exchange Preferences": "cc-by-sa-4.0", "org/prefs": "see the dataset's card",
                        "local files (mine)": "not stated: the publisher must state the license of the local files"}
    citations = {d["name"]: d["citation"] for d in info.datasets}
    assert "Training a Helpful and Harmless Assistant" in citations["Anthropic HH-RLHF"]
    assert "UltraFeedback: Boosting Language Models" in citations["UltraFeedback (binarized)"]
    assert "Lambert, Nathan" in citations["Stack Exchange Preferences"]
    assert "first 100,000 pairs" in info.description and "local files" in info.description
    assert "12 pairs gave 10 distinct prompts" in info.description


def test_shipped_samples_hold_about_320_distinct_prompts_some_shared(tmp_path):
    cfg = parse_table(pp.Config, {"sources": [
        {"name": name, "dataset": f"preference-sample/{name}"} for name in pp.SAMPLE_NAMES]}, "[source]")
    manifest = pp.run(cfg, tmp_path / "out", CONTEXT)
    rows = read_table(tmp_path / "out").to_pylist()
    assert 290 <= len(rows) <= 350 and sum(manifest.stats["dropped"].values()) == 0
    assert any(len(r["sources"]) > 1 for r in rows) and any(r["pair_count"] > 1 and len(r["sources"]) == 1
                                                           for r in rows)
    assert any(len(json.loads(r["prefix"])) > 1 for r in rows if r["source"] == "hh_rlhf_style")
    assert all(set(manifest.stats["rows_first_seen"].values()))
    assert {d["license"] for d in pp.card(cfg, manifest.stats).datasets} == {"mit"}


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_or_blank_input_is_an_error_not_a_complete_output(tmp_path, content):
    (tmp_path / "empty.jsonl").write_text(content)
    cfg = parse_table(pp.Config, {"sources": [{"name": "e", "files": [str(tmp_path / "empty.jsonl")]}]}, "[source]")
    with pytest.raises(UserError, match=r"source preference_prompts: no prompts: 0 pairs read \(e 0\)"):
        pp.run(cfg, tmp_path / "out", CONTEXT)
    assert not (tmp_path / "out" / MANIFEST).exists()


def test_pairs_that_all_drop_say_why(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "  "}, {"prefix": [bot("Hi")]}])
    cfg = parse_table(pp.Config, {"sources": [{"name": "p", "files": [path]}]}, "[source]")
    with pytest.raises(UserError, match=r"2 pairs read \(p 2\), dropped: no_user_message 1, empty_message 1"):
        pp.run(cfg, tmp_path / "out", CONTEXT)
