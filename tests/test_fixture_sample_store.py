"""The shared collected-sample fixture really holds posts in all four target languages."""

from mmner_data.store import CorpusStore


def test_sample_store_has_kept_posts_in_every_language(sample_store):
    with CorpusStore(sample_store) as st:
        rows = st.query("SELECT lang, COUNT(*) AS n FROM posts WHERE status='kept' GROUP BY lang")
    counts = {r["lang"]: r["n"] for r in rows}
    assert set(counts) == {"en", "fr", "de", "es"}
    assert all(n >= 10 for n in counts.values()), counts
