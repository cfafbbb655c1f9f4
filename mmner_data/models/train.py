"""The training loop shared by 2M-NER and the text-only baselines.

AdamW with two learning rates (pretrained encoders vs. the new heads: fusion, alignment,
classifier, CRF), linear warm-up then linear decay, gradient clipping, early stopping on dev
entity F1, fixed seeds (Python, NumPy, torch, and the shuffling order of each epoch), a full
checkpoint after every epoch (``checkpoints/epoch-NNN``: model folder + ``trainer_state.pt``)
so that ``resume=True`` continues exactly where a killed run stopped, and the best model (by dev
F1) saved as a model folder at the top of ``output``. bf16 autocast on CUDA; the CRF runs in fp32.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmner_data.errors import MmnerError
from mmner_data.models.config import ModelConfig, bio_labels, is_checkpoint
from mmner_data.models.data import Collator, NerExample, load_splits, to_device
from mmner_data.models.encoders import pick_device
from mmner_data.models.evaluate import evaluate_model
from mmner_data.models.model import NerModel
from mmner_data.models.settings import TrainSettings

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int | None], None]
STATE_NAME = "trainer_state.pt"
CKPT_DIR = "checkpoints"


class TrainError(MmnerError):
    """Training cannot start or resume; the message says why."""


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def model_config_for(settings: TrainSettings, entity_types: Sequence[str]) -> ModelConfig:
    return ModelConfig(
        architecture=settings.model,
        labels=bio_labels(list(entity_types)),
        text_encoder=settings.text_encoder,
        image_encoder=settings.image_encoder if settings.model == "2m-ner" else None,
        image_backend=settings.image_backend,
        image_pretrained=settings.image_pretrained,
        freeze_image=settings.freeze_image,
        max_length=settings.max_length,
        dropout=settings.dropout,
        fusion_heads=settings.fusion_heads,
        proj_dim=settings.proj_dim,
        contrastive_weight=settings.contrastive_weight,
        temperature=settings.temperature,
    )


def _param_groups(model: NerModel, settings: TrainSettings) -> list[dict[str, Any]]:
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    encoders = {"text_encoder", "image_encoder"}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_enc = name.split(".", 1)[0] in encoders
        no_decay = p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias")
        groups.setdefault((is_enc, no_decay), []).append(p)
    return [
        {
            "params": ps,
            "lr": settings.lr_encoder if is_enc else settings.lr_head,
            "weight_decay": 0.0 if no_decay else settings.weight_decay,
        }
        for (is_enc, no_decay), ps in sorted(groups.items())
    ]


def _schedule(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _latest_checkpoint(output: Path) -> Path | None:
    ckpts = sorted((output / CKPT_DIR).glob("epoch-[0-9][0-9][0-9]"))
    ckpts = [c for c in ckpts if (c / STATE_NAME).is_file() and is_checkpoint(c)]
    return ckpts[-1] if ckpts else None


def fit(
    model: NerModel,
    train: Sequence[NerExample],
    dev: Sequence[NerExample],
    settings: TrainSettings,
    output: Path,
    *,
    resume_state: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``train``, selecting on ``dev`` F1; returns the training summary."""
    if not train:
        raise TrainError("no training examples")
    if not dev:
        log.warning("no dev examples: selecting on training F1")
        dev = train
    device = pick_device(settings.device)
    model.to(device)
    set_seed(settings.seed)
    collate = Collator(model.config, model.tokenizer)
    steps_per_epoch = (len(train) + settings.batch_size - 1) // settings.batch_size
    total = steps_per_epoch * settings.epochs
    optimizer = torch.optim.AdamW(_param_groups(model, settings))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(total, int(settings.warmup_ratio * total))
    )
    state: dict[str, Any] = {"epoch": 0, "best_f1": -1.0, "best_epoch": 0, "bad": 0, "history": []}
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        state = resume_state["trainer"]
        torch.set_rng_state(resume_state["rng_torch"])
        random.setstate(resume_state["rng_python"])
        np.random.set_state(resume_state["rng_numpy"])
    amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    stopped_early = False
    if progress:
        progress("train", state["epoch"] * steps_per_epoch, total)
    for epoch in range(state["epoch"] + 1, settings.epochs + 1):
        if settings.patience and state["bad"] >= settings.patience:
            stopped_early = True
            break
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(
            len(train), generator=torch.Generator().manual_seed(settings.seed + epoch)
        )
        losses = []
        for i in range(0, len(train), settings.batch_size):
            batch = to_device(
                collate([train[j] for j in order[i : i + settings.batch_size]]), device
            )
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                out = model(batch)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(float(out["loss"].detach()))
            if progress:
                progress("train", 1, total)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            metrics = evaluate_model(model, dev, batch_size=settings.eval_batch_size)
        f1 = metrics["overall"]["f1"]
        record = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "dev_f1": f1,
            "dev_precision": metrics["overall"]["precision"],
            "dev_recall": metrics["overall"]["recall"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        state["history"].append(record)
        log.info("epoch %d: loss %.4f dev F1 %.4f", epoch, record["loss"], f1)
        if f1 > state["best_f1"] + 1e-9:
            state.update(best_f1=f1, best_epoch=epoch, bad=0)
            model.save_pretrained(output)
        else:
            state["bad"] += 1
        state["epoch"] = epoch
        _save_checkpoint(model, optimizer, scheduler, state, output, settings.keep_checkpoints)
    summary = {
        "best_epoch": state["best_epoch"],
        "best_dev_f1": state["best_f1"],
        "epochs_run": state["epoch"],
        "stopped_early": stopped_early or state["epoch"] < settings.epochs,
        "history": state["history"],
        "device": str(device),
    }
    (output / "training_log.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _save_checkpoint(
    model: NerModel, optimizer: Any, scheduler: Any, state: dict[str, Any], output: Path, keep: int
) -> None:
    root = output / CKPT_DIR
    final = root / f"epoch-{state['epoch']:03d}"
    tmp = root / f".tmp-epoch-{state['epoch']:03d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "trainer": state,
            "rng_torch": torch.get_rng_state(),
            "rng_python": random.getstate(),
            "rng_numpy": np.random.get_state(),
        },
        tmp / STATE_NAME,
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("epoch-[0-9][0-9][0-9]"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def run_train(
    settings: TrainSettings,
    data: Path,
    output: Path,
    *,
    resume: bool = False,
    entity_types: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Load the data, build (or resume) the model, train; returns a JSON-able summary."""
    output = Path(output)
    splits, types = load_splits(Path(data), entity_types=entity_types, fractions=settings.splits)
    args_path = output / "training_args.json"
    args = {
        "settings": settings.model_dump(mode="json"),
        "data": str(data),
        "entity_types": types,
        "examples": {k: len(v) for k, v in splits.items()},
    }
    resume_state = None
    ckpt = _latest_checkpoint(output) if resume else None
    if ckpt is not None:
        saved = json.loads(args_path.read_text()) if args_path.is_file() else None
        if saved is not None and (saved["settings"], saved["entity_types"]) != (
            args["settings"],
            args["entity_types"],
        ):
            raise TrainError(
                f"{output} was trained with other settings or labels; resume with the same "
                "ones, or train into a new --output folder"
            )
        model = NerModel.from_pretrained(ckpt)
        resume_state = torch.load(ckpt / STATE_NAME, weights_only=False)
        log.info("resuming from %s", ckpt)
    else:
        if not resume and (is_checkpoint(output) or (output / CKPT_DIR).exists()):
            raise TrainError(
                f"{output} already holds a model; pass --resume to continue it or pick a new "
                "--output folder"
            )
        set_seed(settings.seed)
        model = NerModel.build(model_config_for(settings, types))
    output.mkdir(parents=True, exist_ok=True)
    args_path.write_text(json.dumps(args, indent=2) + "\n")
    summary = fit(
        model,
        splits["train"],
        splits["validation"],
        settings,
        output,
        resume_state=resume_state,
        progress=progress,
    )
    return {"output": str(output), "model": settings.model, **args, **summary}
