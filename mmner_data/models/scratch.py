"""Encoders made from scratch (random weights, tokenizer trained on given texts), saved as folders.

Used where no pretrained encoder can be had: the tests (tiny sizes) and the bundled baseline
checkpoint (see ``baseline_models/``). The folders are ordinary Hugging Face model folders, so
they load through the same ``AutoModel`` / ``AutoTokenizer`` calls as a hub model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Iterable[str], vocab_size: int = 2000) -> object:
    """A cased WordPiece tokenizer (BERT-style pre-tokenisation) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS)
    tok.train_from_iterator(list(texts), trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def write_text_encoder(
    folder: Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 2000,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    intermediate: int | None = None,
    max_positions: int = 256,
    seed: int = 0,
) -> Path:
    """A randomly initialised BERT encoder + a WordPiece tokenizer trained on ``texts``."""
    import torch
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_wordpiece(texts, vocab_size)
    config = BertConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate or 4 * hidden,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
    )
    torch.manual_seed(seed)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def write_vision_encoder(
    folder: Path,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden: int = 32,
    layers: int = 1,
    heads: int = 2,
    seed: int = 0,
) -> Path:
    """A randomly initialised CLIP vision tower (``CLIPVisionModel``) + its image processor."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = CLIPVisionConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        projection_dim=hidden,
    )
    torch.manual_seed(seed)
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    """``python -m mmner_data.models.scratch text|vision …``: write a from-scratch encoder."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m mmner_data.models.scratch", description=main.__doc__
    )
    sub = parser.add_subparsers(dest="kind", required=True)
    t = sub.add_parser("text", help="BERT encoder + WordPiece trained on a data split's texts")
    t.add_argument("--data", required=True, type=Path, help="corpus store or HF export folder")
    t.add_argument("--split", default="train", help="split whose texts train the tokenizer")
    t.add_argument("--out", required=True, type=Path, help="folder to write")
    t.add_argument("--vocab-size", type=int, default=3000)
    t.add_argument("--hidden", type=int, default=128)
    t.add_argument("--layers", type=int, default=2)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--max-positions", type=int, default=256)
    t.add_argument("--seed", type=int, default=0)
    v = sub.add_parser("vision", help="CLIP vision tower with random weights")
    v.add_argument("--out", required=True, type=Path, help="folder to write")
    v.add_argument("--image-size", type=int, default=64)
    v.add_argument("--patch-size", type=int, default=16)
    v.add_argument("--hidden", type=int, default=64)
    v.add_argument("--layers", type=int, default=2)
    v.add_argument("--heads", type=int, default=2)
    v.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if args.kind == "text":
        from mmner_data.models.data import load_splits

        splits, _ = load_splits(args.data)
        texts = [ex.text or " ".join(ex.tokens) for ex in splits.get(args.split, [])]
        if not texts:
            parser.error(f"the {args.split} split of {args.data} is empty")
        write_text_encoder(
            args.out,
            texts,
            vocab_size=args.vocab_size,
            hidden=args.hidden,
            layers=args.layers,
            heads=args.heads,
            max_positions=args.max_positions,
            seed=args.seed,
        )
        print(f"wrote {args.out} (tokenizer trained on {len(texts)} {args.split} texts)")
    else:
        write_vision_encoder(
            args.out,
            image_size=args.image_size,
            patch_size=args.patch_size,
            hidden=args.hidden,
            layers=args.layers,
            heads=args.heads,
            seed=args.seed,
        )
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
