"""text_corpus: WikiText clean-up, paragraphs, filters, the token window, local files and the Hub path,
resuming, byte-identical reruns, config errors and the card. Corpora are written by the tests; tokens are
whitespace words (the encoder's tokenizer is not needed to test the source)."""

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vs_sonar_dataset.core.errors import ShardError, UserError
from vs_sonar_dataset.core.settings import parse_table
from vs_sonar_dataset.core.shards import MANIFEST, read_manifest, read_table
from vs_sonar_dataset.core.textnorm import text_id
from vs_sonar_dataset.sources import text_corpus as tc
from vs_sonar_dataset.sources.base import SourceContext


def words(texts):
    return [len(t.split()) for t in texts]


CONTEXT = SourceContext(count_tokens=words, progress=False)

LONG = " ".join(f"word{i}" for i in range(70))
TRAIN = f""" 
 = Harbour Lights = 
 
 The harbour lights were first lit in 1 @,@ 850 , after a well @-@ known storm wrecked three ships . 
 The keeper 's house stood <unk> on the rocks , 3 @.@ 5 metres above the tide ( at high water ) . 
 
 = = Design = = 
 
 1 , 2 ; 3 : 4 – 5 – 6 ( 7 ) 8 , 9 . 10 @.@ 11 , 12 . 
 
 Too short here . 
 
 {LONG} 
 = = = Later years = = = 
 The tower was painted red and white so that sailors could see it by day . 
"""
VALID = """ 
 = Another Page = 
 
 The tower was painted red and white so that sailors could see it by day . 
 
 A new lamp was fitted in the spring , and it shone twice as far as the old one did n't . 
"""
PARA_1 = ("The harbour lights were first lit in 1,850, after a well-known storm wrecked three ships. The keeper's "
          "house stood on the rocks, 3.5 metres above the tide (at high water).")
PARA_TOWER = "The tower was painted red and white so that sailors could see it by day."
PARA_LAMP = "A new lamp was fitted in the spring, and it shone twice as far as the old one didn't."


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "wiki.train.tokens").write_text(TRAIN, encoding="utf-8")
    (tmp_path / "wiki.valid.tokens").write_text(VALID, encoding="utf-8")
    return tmp_path


def config(corpus, **values):
    """Local WikiText files of the splits asked for (train and validation by default)."""
    splits = values.get("splits", ["train", "validation"])
    files = {"train": [str(corpus / "wiki.train.tokens")], "validation": [str(corpus / "wiki.valid.tokens")]}
    base = {"kind": "text_corpus", "splits": splits, "min_tokens": 5, "max_tokens": 60,
            "files": {split: files[split] for split in splits}}
    return parse_table(tc.Config, {**base, **values}, "[source]")


def test_clean_wikitext_joins_markers_drops_unk_and_fixes_tokenizer_spaces():
    assert tc.clean_wikitext(" a 3 @.@ 5 km , well @-@ known ( 1 @,@ 000 ) <unk> site 's gate : open . ") == \
        "a 3.5 km, well-known (1,000) site's gate: open."
    assert tc.clean_wikitext("he did n't ; score 2 : 1 ! [ note ] 50 % of \" them \" .") == \
        "he didn't; score 2 : 1! [note] 50% of \" them \"."
    assert tc.clean_wikitext("players ' turns . . .") == "players ' turns..."


@pytest.mark.parametrize("line,heading", [(" = Title = ", True), (" = = Sub = = ", True), (" = = = Deep = = = ", True),
                                          (" x = y + 1 ", False), (" = ", False), (" The = sign is used . ", False)])
def test_headings(line, heading):
    assert tc.is_heading(line) is heading


def test_symbol_share_counts_punctuation_symbols_and_digits():
    assert tc.symbol_share("1 , 2 ; 3") == 1.0
    assert tc.symbol_share("ab 12") == 0.5
    assert tc.symbol_share("") == 0.0


def test_wikitext_files_give_clean_paragraphs_in_order_with_counts(corpus, tmp_path):
    manifest = tc.run(config(corpus), tmp_path / "out", CONTEXT)
    table = read_table(tmp_path / "out", "candidates")
    assert table.schema.equals(tc.schema(config(corpus)))
    rows = table.to_pylist()
    # train: [0] two lines merged, [1] digits, [2] too short, [3] 70 words, [4] tower (after a sub-sub-heading);
    # validation: [0] tower again (duplicate across splits), [1] lamp
    assert [(r["split"], r["paragraph_index"], r["text"]) for r in rows] == [
        ("train", 0, PARA_1), ("train", 4, PARA_TOWER), ("validation", 1, PARA_LAMP)]
    assert [r["tokens"] for r in rows] == words([PARA_1, PARA_TOWER, PARA_LAMP])
    assert all(r["id"] == text_id(r["text"]) and r["source"] == "local" for r in rows)
    assert manifest.complete and manifest.text_column == "text" and manifest.rows == 3
    assert manifest.stats == {
        "lines_read": 21, "heading_lines": 4, "paragraphs_read": 7, "kept": 3,
        "dropped": {"empty": 0, "symbols": 1, "too_short": 1, "too_long": 1, "duplicate": 1},
        "per_split": {"train": {"paragraphs_read": 5, "kept": 2}, "validation": {"paragraphs_read": 2, "kept": 1}},
        "max_rows_reached": False}
    summary = json.loads((tmp_path / "out" / tc.SUMMARY).read_text())
    assert summary["status"] == "complete" and summary["rows"] == 3 and summary["dropped"]["duplicate"] == 1


def test_line_is_paragraph_splits_wikitext_lines(corpus, tmp_path):
    tc.run(config(corpus, line_is_paragraph=True, splits=["train"]), tmp_path / "out", CONTEXT)
    rows = read_table(tmp_path / "out").to_pylist()
    assert [r["paragraph_index"] for r in rows] == [0, 1, 5]
    assert rows[0]["text"] == PARA_1.split(" The keeper")[0]


def test_without_cleanup_text_is_kept_as_written(corpus, tmp_path):
    tc.run(config(corpus, wikitext_cleanup=False, min_tokens=1, splits=["validation"]), tmp_path / "out", CONTEXT)
    texts = read_table(tmp_path / "out").column("text").to_pylist()
    assert texts == ["= Another Page =", PARA_TOWER.replace(".", " ."),
                     "A new lamp was fitted in the spring , and it shone twice as far as the old one did n't ."]


def test_jsonl_and_parquet_rows_are_read_as_lines(corpus, tmp_path):
    lines = TRAIN.splitlines()
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"body": line + "\n"}) + "\n" for line in lines))
    pq.write_table(pa.table({"body": [line + "\n" for line in lines]}), tmp_path / "train.parquet")
    expected = None
    for name in ("wiki.train.tokens", "train.jsonl", "train.parquet"):
        out = tmp_path / f"out-{name}"
        tc.run(config(corpus, splits=["train"], text_field="body", files={"train": [str(tmp_path / name)]}), out,
               CONTEXT)
        texts = read_table(out).column("text").to_pylist()
        assert texts == (expected or texts) and texts == [PARA_1, PARA_TOWER]
        expected = texts


def test_a_file_ends_a_paragraph(corpus, tmp_path):
    (tmp_path / "a.txt").write_text("one two three\nfour five\n")
    (tmp_path / "b.txt").write_text("six seven eight nine ten\n")
    tc.run(config(corpus, splits=["train"], min_tokens=1, files={"train": [str(tmp_path / "a.txt"),
                                                                       str(tmp_path / "b.txt")]}),
           tmp_path / "out", CONTEXT)
    rows = read_table(tmp_path / "out").to_pylist()
    assert [(r["text"], r["paragraph_index"]) for r in rows] == [("one two three four five", 0),
                                                                 ("six seven eight nine ten", 1)]


def test_max_rows_stops_at_the_cap(corpus, tmp_path):
    manifest = tc.run(config(corpus, max_rows=2), tmp_path / "out", CONTEXT)
    assert read_table(tmp_path / "out").column("text").to_pylist() == [PARA_1, PARA_TOWER]
    assert manifest.stats["max_rows_reached"] is True and manifest.stats["kept"] == 2


def test_hub_datasets_are_loaded_per_split(monkeypatch, tmp_path):
    calls = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({"text": [line + "\n" for line in (TRAIN if split == "train" else VALID)
                                                    .splitlines()]})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    cfg = parse_table(tc.Config, {"kind": "text_corpus", "splits": ["train", "validation"], "min_tokens": 5,
                                  "max_tokens": 60}, "[source]")
    tc.run(cfg, tmp_path / "out", CONTEXT)
    assert calls == [("Salesforce/wikitext", "wikitext-2-v1", "train"),
                     ("Salesforce/wikitext", "wikitext-2-v1", "validation")]
    rows = read_table(tmp_path / "out").to_pylist()
    assert [r["text"] for r in rows] == [PARA_1, PARA_TOWER, PARA_LAMP]
    assert {r["source"] for r in rows} == {"Salesforce/wikitext"}


def test_hub_failure_is_one_line(monkeypatch, tmp_path):
    def load_dataset(*args, **kwargs):
        raise ConnectionError("no route to host\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(UserError, match=r"could not load Salesforce/wikitext \(wikitext-2-v1, train\)") as error:
        tc.run(parse_table(tc.Config, {"kind": "text_corpus"}, "[source]"), tmp_path / "out", CONTEXT)
    assert "\n" not in str(error.value)


def test_without_a_tokenizer_the_run_says_what_is_missing(corpus, tmp_path):
    with pytest.raises(UserError, match="encoder's tokenizer"):
        tc.run(config(corpus), tmp_path / "out", SourceContext(count_tokens=None, progress=False))


def test_missing_and_undecodable_files_are_user_errors(corpus, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        tc.run(config(corpus, files={"train": [str(tmp_path / "nope.txt")]}), tmp_path / "out", CONTEXT)
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(UserError, match="not UTF-8"):
        tc.run(config(corpus, files={"train": [str(tmp_path / "bad.txt")]}), tmp_path / "out2", CONTEXT)


@pytest.mark.parametrize("values,message", [
    ({"min_tokens": "5"}, "min_tokens: Input should be a valid integer"),
    ({"colour": "red"}, "colour: unknown key"),
    ({"min_tokens": 50, "max_tokens": 10}, "max_tokens: is below min_tokens (50) (got 10)"),
    ({"files": {"dev": ["x.txt"]}}, "files: names split(s) ['dev'] that are not in splits"),
    ({"splits": ["train", "train"]}, "splits: a split is listed twice"),
    ({"dataset": "corpus-sample", "splits": ["dev"]}, "splits: the corpus sample has splits"),
    ({"max_symbol_share": 1.5}, "max_symbol_share: Input should be less than or equal to 1"),
    ({"splits": []}, "splits: List should have at least 1 item"),
])
def test_config_errors_are_one_line(values, message):
    with pytest.raises(UserError) as error:
        parse_table(tc.Config, {"kind": "text_corpus", **values}, "[source]")
    assert message in str(error.value) and str(error.value).startswith("[source]: ")
    assert "\n" not in str(error.value)


def test_same_input_gives_byte_identical_shards(corpus, tmp_path):
    for out in ("a", "b"):
        tc.run(config(corpus), tmp_path / out, CONTEXT)
    shards = sorted(p.name for p in (tmp_path / "a").glob("shard-*.parquet"))
    assert shards and shards == sorted(p.name for p in (tmp_path / "b").glob("shard-*.parquet"))
    for name in shards:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_complete_output_is_left_alone_and_an_incomplete_one_redone(corpus, tmp_path):
    out = tmp_path / "out"
    tc.run(config(corpus), out, CONTEXT)
    shard = out / "shard-00000.parquet"
    stamp, original = shard.stat().st_mtime_ns, shard.read_bytes()
    tc.run(config(corpus), out, CONTEXT)
    assert shard.stat().st_mtime_ns == stamp
    # a run stopped part way: manifest not complete, a stray shard it never committed
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["complete"] = False
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / "shard-00001.parquet").write_bytes(b"partial")
    tc.run(config(corpus), out, CONTEXT)
    assert read_manifest(out).complete and shard.read_bytes() == original
    assert len(read_table(out)) == 3


def test_a_complete_output_of_another_config_or_tokenizer_is_refused(corpus, tmp_path):
    out = tmp_path / "out"
    tc.run(config(corpus), out, CONTEXT)
    with pytest.raises(ShardError, match="another configuration"):
        tc.run(config(corpus, min_tokens=6), out, CONTEXT)
    with pytest.raises(ShardError, match="another configuration"):
        tc.run(config(corpus), out, SourceContext(count_tokens=lambda texts: [len(t) for t in texts], progress=False))


def test_changed_local_input_is_not_taken_for_the_old_output(corpus, tmp_path):
    out = tmp_path / "out"
    tc.run(config(corpus), out, CONTEXT)
    (corpus / "wiki.valid.tokens").write_text(VALID + "\n A further paragraph about lamps and towers at sea .\n")
    with pytest.raises(ShardError, match="another configuration"):
        tc.run(config(corpus), out, CONTEXT)


def test_card_names_wikitext_with_license_and_citation(corpus):
    info = tc.card(parse_table(tc.Config, {"kind": "text_corpus"}, "[source]"), {"kept": 10, "paragraphs_read": 20})
    [entry] = info.datasets
    assert entry["license"] == "cc-by-sa-3.0" and "Pointer Sentinel Mixture Models" in entry["citation"]
    assert entry["citation"].startswith("@misc{merity2016pointer") and "wikitext" in info.tags
    assert "10 of 20 paragraphs" in info.description
    local = tc.card(config(corpus), {})
    assert "publisher" in local.datasets[0]["license"] and "local files" in local.description
    other = tc.card(parse_table(tc.Config, {"kind": "text_corpus", "dataset": "org/corpus"}, "[source]"), {})
    assert other.datasets[0]["license"] == "see the dataset's card"


def test_shipped_sample_has_about_160_paragraphs_of_60_to_200_words(tmp_path):
    cfg = parse_table(tc.Config, {"kind": "text_corpus", "dataset": "corpus-sample", "line_is_paragraph": True,
                                  "min_tokens": 1, "max_tokens": 10_000, "max_symbol_share": 1.0}, "[source]")
    manifest = tc.run(cfg, tmp_path / "out", CONTEXT)
    rows = read_table(tmp_path / "out").to_pylist()
    assert 140 <= len(rows) <= 180 and manifest.stats["dropped"]["duplicate"] == 0
    assert all(55 <= r["tokens"] <= 210 for r in rows)
    assert {r["split"] for r in rows} == {"train", "validation", "test"} and rows[0]["source"] == "corpus-sample"
    assert not any("@" in r["text"] or " ," in r["text"] for r in rows)
    assert manifest.stats["heading_lines"] > 40
    assert tc.card(cfg, manifest.stats).datasets[0]["license"] == "mit"


@pytest.mark.parametrize("content", ["", "   \n\n \t\n"])
def test_an_empty_or_blank_input_is_an_error_not_a_complete_output(corpus, tmp_path, content):
    (tmp_path / "empty.txt").write_text(content)
    with pytest.raises(UserError, match=r"source text_corpus: no paragraphs: \d+ lines read, 0 paragraphs"):
        tc.run(config(corpus, splits=["train"], files={"train": [str(tmp_path / "empty.txt")]}), tmp_path / "out",
               CONTEXT)
    # no complete candidates for embed to take
    assert not (tmp_path / "out" / MANIFEST).exists() or not read_manifest(tmp_path / "out").complete
