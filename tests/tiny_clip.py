"""Tiny open_clip checkpoints with random weights, written to a folder and loaded by path.

* :func:`write_tiny_clip` — a model config ``<name>.json`` (small ViT + open_clip's own text
  transformer and BPE tokenizer) and ``<name>.safetensors``: loaded as
  ``add_model_config`` + ``create_model_and_transforms(<name>, pretrained=<weights>)``, the call a
  hub name/tag takes. About 3.5 MB.
* :func:`write_tiny_xlmr_clip` — open_clip's ``local-dir`` layout with a Hugging Face XLM-R text
  tower (2 layers, width 32) and a SentencePiece-style Unigram tokenizer trained here on a few
  EN/FR/DE/ES sentences: the multilingual path of the default model, offline. Needs transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_NAME = "tiny-clip-test"
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}

CORPUS = [
    "A cat sleeps on the sofa next to the window.",
    "The rocket launches from the pad at dawn.",
    "Un chat dort sur le canapé près de la fenêtre.",
    "La fusée décolle de la rampe à l'aube.",
    "Eine Katze schläft auf dem Sofa neben dem Fenster.",
    "Die Rakete startet im Morgengrauen von der Rampe.",
    "Un gato duerme en el sofá junto a la ventana.",
    "El cohete despega de la plataforma al amanecer.",
    "Coffee in the morning, astronauts in space, coins on the table.",
    "Café le matin, des astronautes dans l'espace, des pièces sur la table.",
]


def _save(model: object, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}  # type: ignore[attr-defined]
    save_file(state, str(path))


def write_tiny_clip(folder: Path, *, seed: int = 0, name: str = TINY_NAME) -> Path:
    """Write ``<name>.json`` + ``<name>.safetensors`` into ``folder``; return the folder."""
    import torch
    from open_clip.model import CLIP

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(TINY_CFG, indent=2))
    torch.manual_seed(seed)
    model = CLIP(**TINY_CFG)
    _save(model, folder / f"{name}.safetensors")
    return folder


def write_tiny_xlmr_clip(folder: Path, *, seed: int = 0) -> Path:
    """Write an open_clip ``local-dir`` checkpoint with a tiny XLM-R text tower; return it."""
    import open_clip
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        CORPUS, trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token="<unk>")
    )
    tok.post_processor = TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
    )
    fast.save_pretrained(folder)
    context = 32
    XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=context + 2,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    ).save_pretrained(folder)
    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": TINY_CFG["vision_cfg"],
        "text_cfg": {
            "hf_model_name": str(folder.resolve()),
            "hf_tokenizer_name": str(folder.resolve()),
            "hf_pooler_type": "mean_pooler",
            "context_length": context,
        },
    }
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}, indent=2)
    )
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder.resolve()}", pretrained_text=False)
    _save(model, folder / "open_clip_model.safetensors")
    return folder
