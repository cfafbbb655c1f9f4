"""The Twitter-2015 layout: writer and a reader written from the format's description."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmner_data.export.twitter2015 import (
    Sentence,
    Twitter2015Error,
    format_sentences,
    parse_sentences,
    read_twitter2015,
)

# Two posts in the layout of the Twitter-2015 files (Zhang et al. 2018, as the UMT code reads
# them): an IMGID line, token<TAB>tag lines, a blank line after each post.
PUBLISHED = (
    "IMGID:1015799\n"
    "RT\tO\n"
    "@JayKenMinaj_\tO\n"
    ":\tO\n"
    "Me\tO\n"
    "outside\tO\n"
    "of\tO\n"
    "where\tO\n"
    "George\tB-PER\n"
    "Zimmerman\tI-PER\n"
    "got\tO\n"
    "shot\tO\n"
    "at\tO\n"
    "\n"
    "IMGID:16_05_01_6\n"
    "Ellie\tB-PER\n"
    "Goulding\tI-PER\n"
    "in\tO\n"
    "Glasgow\tB-LOC\n"
    "\n"
)


def test_reads_the_published_layout():
    sents = parse_sentences(PUBLISHED)
    assert [s.image_id for s in sents] == ["1015799", "16_05_01_6"]
    assert sents[1].tokens == ("Ellie", "Goulding", "in", "Glasgow")
    assert sents[1].tags == ("B-PER", "I-PER", "O", "B-LOC")
    assert format_sentences(sents) == PUBLISHED


def test_tolerates_crlf_spaces_and_missing_final_blank_line():
    text = "IMGID:7\r\nParis B-LOC\r\nrocks\tO"
    assert parse_sentences(text) == [Sentence("7", ("Paris", "rocks"), ("B-LOC", "O"))]


@pytest.mark.parametrize(
    "bad, where",
    [("Paris\tB-LOC\n", ":1"), ("IMGID:1\nParis\n", ":2"), ("IMGID:1\na\tb\tc\n", ":2")],
)
def test_malformed_lines_name_the_line(bad, where):
    with pytest.raises(Twitter2015Error, match=where):
        parse_sentences(bad, name="f")


def test_writer_refuses_tokens_with_whitespace():
    with pytest.raises(Twitter2015Error):
        format_sentences([Sentence("1", ("a b",), ("O",))])


_token = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters="\x85"),
    min_size=1,
    max_size=6,
).filter(lambda t: not any(c.isspace() for c in t))
_sentence = st.integers(1, 8).flatmap(
    lambda n: st.builds(
        Sentence,
        st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True),
        st.lists(_token, min_size=n, max_size=n).map(tuple),
        st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC"]), min_size=n, max_size=n).map(
            tuple
        ),
    )
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_sentence, max_size=6))
def test_write_then_read_round_trips(sentences):
    assert parse_sentences(format_sentences(sentences)) == sentences


def test_read_folder_needs_a_split_file(tmp_path):
    with pytest.raises(Twitter2015Error, match=r"no train\.txt"):
        read_twitter2015(tmp_path)
    (tmp_path / "valid.txt").write_text(PUBLISHED)
    assert list(read_twitter2015(tmp_path)) == ["validation"]
