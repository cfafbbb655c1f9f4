from pathlib import Path

import pytest

from mmner_data.config import RecipeError, build_recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]


def _raw(**extra):
    raw = {"name": "t", "sources": [{"name": "f", "type": "jsonl", "path": "x.jsonl"}]}
    raw.update(extra)
    return raw


def test_sample_recipe_validates_with_server_url():
    r = load_recipe(
        REPO / "recipes" / "sample.yaml", extra_vars={"SAMPLE_SERVER": "http://127.0.0.1:9"}
    )
    assert r.languages == ("en", "fr", "de", "es")
    assert {s.type for s in r.sources} == {"mastodon", "bluesky", "rss", "jsonl"}
    assert r.sources[0].base_url == "http://127.0.0.1:9"


def test_misspelt_key_is_named():
    with pytest.raises(RecipeError, match=r"dedup\.text_treshold: unknown key"):
        build_recipe(_raw(dedup={"text_treshold": 0.5}), recipe_dir=Path("."))


def test_unknown_source_type_and_bad_language():
    with pytest.raises(RecipeError, match=r"sources\.0"):
        build_recipe({"sources": [{"name": "a", "type": "myspace"}]}, recipe_dir=Path("."))
    with pytest.raises(RecipeError, match="ISO 639-1"):
        build_recipe(_raw(languages=["english"]), recipe_dir=Path("."))


def test_duplicate_source_names_rejected():
    src = {"name": "a", "type": "jsonl", "path": "x"}
    with pytest.raises(RecipeError, match="repeated"):
        build_recipe({"sources": [src, src]}, recipe_dir=Path("."))


def test_variables_expand_and_missing_ones_fail(monkeypatch):
    monkeypatch.setenv("MY_FEED", "http://127.0.0.1:1/feed.xml")
    r = build_recipe(
        {
            "sources": [
                {"name": "a", "type": "rss", "url": "${MY_FEED}"},
                {"name": "b", "type": "jsonl", "path": "${RECIPE_DIR}/p.jsonl"},
                {"name": "c", "type": "rss", "url": "${NOPE:-http://127.0.0.1:2/}"},
            ]
        },
        recipe_dir=Path("/tmp"),
    )
    assert r.sources[0].url == "http://127.0.0.1:1/feed.xml"
    assert r.sources[1].path == "/tmp/p.jsonl"
    assert r.sources[2].url == "http://127.0.0.1:2/"
    with pytest.raises(RecipeError, match=r"\$\{NOT_SET_ANYWHERE\}"):
        build_recipe(
            {"sources": [{"name": "a", "type": "rss", "url": "${NOT_SET_ANYWHERE}"}]},
            recipe_dir=Path("."),
        )


def test_not_a_mapping_and_missing_file(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("- just\n- a list\n")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(p)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_image_politeness_and_engine_keys_reach_their_settings():
    from mmner_data.collect.pipeline import image_limits
    from mmner_data.engines import EngineError, engine_settings

    r = build_recipe(
        _raw(images={"per_host": 4, "concurrency": 8}, engine={"name": "ray", "workers": 3}),
        recipe_dir=Path("."),
    )
    limits = image_limits(r)
    assert (limits.per_host, limits.concurrency) == (4, 8)
    eng = engine_settings(r.engine, {"lake": "s3://b/l"})
    assert (eng.name, eng.workers, eng.lake) == ("ray", 3, "s3://b/l")
    assert engine_settings("ray", {"engine": "local"}).name == "local"  # the CLI wins
    with pytest.raises(RecipeError, match=r"images\.per_host"):
        build_recipe(_raw(images={"per_host": 0}), recipe_dir=Path("."))
    with pytest.raises(EngineError, match=r"engine\.wokers: unknown key"):
        engine_settings({"name": "ray", "wokers": 2})
