"""Load a CLIP model through open_clip's own loaders, by hub name or local path, with a stable id.

Accepted forms (the same call serves a user's hub name and a test's local folder):

* ``model=<open_clip name>``, ``pretrained=<tag>`` — e.g. ``xlm-roberta-base-ViT-B-32`` /
  ``laion5b_s13b_b90k`` (downloaded and cached by open_clip);
* ``model=<open_clip name>``, ``pretrained=<weights file>``;
* ``model=hf-hub:<org>/<repo>`` — an open_clip repository on the Hugging Face hub;
* ``model=<folder>`` holding ``open_clip_config.json`` + weights (open_clip's ``local-dir:``
  layout, as ``push_to_hf_hub`` writes it), or one model config ``<name>.json`` (``embed_dim``,
  ``vision_cfg``, ``text_cfg``) + one weights file: the config is registered with
  ``open_clip.add_model_config`` and loaded as ``create_model_and_transforms(<name>,
  pretrained=<weights>)``.

The model id identifies the weights: ``<name>:<tag>`` for a pretrained tag, ``hf-hub:<repo>``
for a hub repository, ``<name>@<sha256[:16]>`` for weights on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.errors import MmnerError
from mmner_data.filter.settings import DEFAULT_MODEL, DEFAULT_PRETRAINED

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
_PREFERRED_WEIGHTS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
)


class ModelLoadError(MmnerError):
    """The model cannot be resolved or loaded; the message says what to pass instead."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What to load and how the scores it produces are labelled."""

    model_id: str
    backend: str  # "open_clip"
    name: str  # open_clip name, "hf-hub:…" or "local-dir:…"
    pretrained: str | None  # tag or weights path (None for schema names)
    checkpoint_sha256: str | None = None
    config_path: str | None = None  # a model config to register first

    def as_row(self) -> dict[str, Any]:
        """The ``relevance_models`` row (without ``created_at``)."""
        import open_clip

        return {
            "model_id": self.model_id,
            "backend": self.backend,
            "name": self.name,
            "pretrained": self.pretrained,
            "checkpoint_sha256": self.checkpoint_sha256,
            "library_version": f"open_clip {open_clip.__version__}",
        }


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _is_model_config(path: Path) -> bool:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg"))


def _weights_in(folder: Path) -> Path:
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    for name in _PREFERRED_WEIGHTS:
        if (folder / name) in files:
            return folder / name
    if len(files) != 1:
        raise ModelLoadError(
            f"{folder}: expected one weights file ({', '.join(WEIGHT_SUFFIXES)}), found "
            f"{[p.name for p in files] or 'none'}"
        )
    return files[0]


def resolve_model(model: str | None, pretrained: str | None) -> ModelSpec:
    """Turn the user's ``model`` / ``pretrained`` into a :class:`ModelSpec` (no weights loaded).

    Local weights are hashed here (so that resume works without loading the model).
    """
    model = model or DEFAULT_MODEL
    if model == DEFAULT_MODEL and pretrained is None:
        pretrained = DEFAULT_PRETRAINED
    path = Path(model.removeprefix("local-dir:")).expanduser()
    if model.startswith("local-dir:") or path.is_dir():
        if pretrained:
            raise ModelLoadError(f"--pretrained is not used with a checkpoint folder ({path})")
        if not path.is_dir():
            raise ModelLoadError(f"checkpoint folder not found: {path}")
        if (path / "open_clip_config.json").is_file():
            weights = _weights_in(path)
            sha = sha256_file(weights)
            return ModelSpec(
                model_id=f"{path.resolve().name}@{sha[:16]}",
                backend="open_clip",
                name=f"local-dir:{path.resolve()}",
                pretrained=None,
                checkpoint_sha256=sha,
            )
        configs = sorted(p for p in path.glob("*.json") if _is_model_config(p))
        if len(configs) != 1:
            raise ModelLoadError(
                f"{path}: a checkpoint folder holds open_clip_config.json, or one model config "
                f"(<name>.json with embed_dim, vision_cfg, text_cfg) and one weights file; "
                f"found {len(configs)} model configs"
            )
        weights = _weights_in(path)
        sha = sha256_file(weights)
        name = configs[0].stem
        return ModelSpec(
            model_id=f"{name}@{sha[:16]}",
            backend="open_clip",
            name=name,
            pretrained=str(weights.resolve()),
            checkpoint_sha256=sha,
            config_path=str(configs[0].resolve()),
        )
    if model.startswith("hf-hub:"):
        if pretrained:
            raise ModelLoadError("--pretrained is not used with an hf-hub: model")
        return ModelSpec(model_id=model, backend="open_clip", name=model, pretrained=None)
    if not pretrained:
        raise ModelLoadError(
            f"model {model!r} needs --pretrained (a tag such as {_tags_hint(model)} or a weights "
            "file); random weights give meaningless scores"
        )
    weights_file = Path(pretrained).expanduser()
    if weights_file.is_file():
        sha = sha256_file(weights_file)
        return ModelSpec(
            model_id=f"{model}@{sha[:16]}",
            backend="open_clip",
            name=model,
            pretrained=str(weights_file.resolve()),
            checkpoint_sha256=sha,
        )
    return ModelSpec(
        model_id=f"{model}:{pretrained}", backend="open_clip", name=model, pretrained=pretrained
    )


def _tags_hint(model: str) -> str:
    try:
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(model)
    except Exception:  # an unknown name: the loader will say so
        tags = []
    return ", ".join(tags[:4]) or "laion2b_s34b_b79k"


@dataclass
class ClipScorer:
    """A loaded image–text model: preprocessing for workers, and a batched cosine score."""

    spec: ModelSpec
    model: Any  # torch.nn.Module with encode_image / encode_text
    preprocess: Callable[[Any], Any]  # PIL image → tensor (picklable)
    tokenizer: Callable[..., Any]  # list[str] → LongTensor [n, context]
    device: Any = None
    autocast_dtype: Any = None  # torch.float16 / torch.bfloat16 on GPU, else None
    extra: dict[str, Any] = field(default_factory=dict)

    def tokenize(self, text: str) -> Any:
        """One text → a 1-D token tensor."""
        return self.tokenizer([text])[0]

    def score(self, images: Any, tokens: Any) -> Any:
        """Cosine of the L2-normalised image and text embeddings, row by row (float32, CPU)."""
        import torch
        import torch.nn.functional as F

        dev = self.device
        images = images.to(dev, non_blocking=True)
        tokens = tokens.to(dev, non_blocking=True)
        ctx = (
            torch.autocast(device_type=dev.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else torch.autocast(device_type=dev.type, enabled=False)
        )
        with torch.inference_mode(), ctx:
            img = self.model.encode_image(images)
            txt = self.model.encode_text(tokens)
        img = F.normalize(img.float(), dim=-1)
        txt = F.normalize(txt.float(), dim=-1)
        return (img * txt).sum(dim=-1).cpu()


def pick_device(device: str = "auto") -> Any:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda: no CUDA device is visible to torch")
    return dev


def pick_autocast(device: Any, precision: str = "auto") -> Any:
    """The autocast dtype: on GPU bf16 where supported (else fp16) for ``auto``; never on CPU."""
    import torch

    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def load_scorer(
    spec: ModelSpec, device: str = "auto", precision: str = "auto", cache_dir: str | None = None
) -> ClipScorer:
    """Load ``spec`` with ``open_clip.create_model_and_transforms`` (weights required)."""
    import open_clip

    dev = pick_device(device)
    if spec.config_path:
        open_clip.add_model_config(spec.config_path)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.name,
            pretrained=spec.pretrained,
            device=dev,
            cache_dir=cache_dir,
            require_pretrained=True,
        )
        tokenizer = open_clip.get_tokenizer(spec.name, cache_dir=cache_dir)
    except (RuntimeError, FileNotFoundError, ValueError, OSError) as exc:
        raise ModelLoadError(f"cannot load {spec.name!r} ({spec.pretrained}): {exc}") from exc
    model.eval()
    return ClipScorer(
        spec=spec,
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        device=dev,
        autocast_dtype=pick_autocast(dev, precision),
    )


def quiet_tokenizers_in_workers() -> None:
    """HF fast tokenizers warn after fork; tokenization happens one text per worker call anyway."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
