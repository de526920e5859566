"""open_clip models as zero-shot ImageNet-1k classifiers (cood.md §5 "CLIP zero-shot").

Recipe: for each of the 1,000 class names of open_clip's own metadata (``open_clip.IMAGENET_CLASSNAMES``,
OpenAI's curated names in ImageNet's sorted-wnid order, i.e. timm's order) and each prompt template
(the 7 of cood.md §5 by default, all 80 of ``open_clip.OPENAI_IMAGENET_TEMPLATES`` with ``?templates=80``):

    class vector = normalize(mean over templates of normalize(text embedding))
    logits       = 100 · cos(image embedding, class vector)       (fp32, autocast disabled)

The scale is fixed at 100 for parity with the published CLIP numbers; the model's learned scale is kept in
:attr:`ClipZeroShot.learned_logit_scale`. Class vectors are computed once per (model, templates) and cached
in memory and on disk under ``$UEBENCH_CACHE`` (default ``~/.cache/uebench``) in ``clip_text/``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common import atomic_output
from pipelines.errors import UserError
from pipelines.zoo.registry import (
    IMAGENET_NUM_CLASSES,
    RANDOM_WEIGHTS_SEED,
    ModelSpec,
    Preprocess,
    close_matches_hint,
    split_random,
)

# The 7 templates of cood.md §5 (a subset of OpenAI's 80 ImageNet templates).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "the {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
TEMPLATE_CHOICES = ("7", "80")
LOGIT_SCALE = 100.0
TEXT_BATCH_CLASSES = 50
CACHE_ENV = "UEBENCH_CACHE"

# open_clip resize_mode -> our crop_mode (crop_pct is 1.0: open_clip resizes straight to the crop size).
_CROP_MODES = {"shortest": "center", "squash": "squash"}

_MEMORY_CACHE: dict[str, torch.Tensor] = {}


def zero_shot_templates(count: str = "7") -> tuple[str, ...]:
    """Prompt templates as ``str.format`` strings: ``"7"`` = cood.md §5's subset, ``"80"`` = all of OpenAI's."""
    import open_clip

    openai = tuple(template("{}") for template in open_clip.OPENAI_IMAGENET_TEMPLATES)
    if count == "80":
        return openai
    if count != "7":
        raise UserError(f"templates must be one of {', '.join(TEMPLATE_CHOICES)}, got {count!r}")
    missing = [t for t in DEFAULT_TEMPLATES if t not in openai]
    if missing:
        raise RuntimeError(f"open_clip's OpenAI templates lack {missing}; the installed open_clip is unexpected")
    return DEFAULT_TEMPLATES


def imagenet_classnames() -> tuple[str, ...]:
    """open_clip's 1,000 ImageNet class names in ImageNet-1k index order (sorted wnids, timm's order)."""
    import open_clip

    names = tuple(open_clip.IMAGENET_CLASSNAMES)
    if len(names) != IMAGENET_NUM_CLASSES:
        raise RuntimeError(f"open_clip.IMAGENET_CLASSNAMES has {len(names)} names, expected 1000")
    return names


def _parse_options(spec: str, query: str) -> str:
    templates = "7"
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key != "templates" or value not in TEMPLATE_CHOICES:
            raise UserError(
                f"unknown open_clip option {item!r} in {spec!r}; the only option is templates=7 or templates=80"
            )
        templates = value
    return templates


def _preprocess(model_cfg: dict[str, Any], tag_cfg: dict[str, Any], spec: str) -> tuple[Preprocess, dict[str, Any]]:
    """Our Preprocess from open_clip's own merge: defaults < model config < pretrained tag; size from the tower."""
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    merged = merge_preprocess_dict(asdict(PreprocessCfg()), model_cfg.get("preprocess_cfg", {}))
    merged = merge_preprocess_dict(merged, tag_cfg)
    size = model_cfg.get("vision_cfg", {}).get("image_size", merged["size"])
    sizes = {int(size)} if isinstance(size, int) else {int(s) for s in size}
    if len(sizes) != 1:
        raise UserError(f"{spec} has a non-square input size {size}; only square crops are supported")
    merged["size"] = sizes.pop()
    if merged["resize_mode"] not in _CROP_MODES:
        raise UserError(
            f"{spec} uses open_clip resize_mode {merged['resize_mode']!r} (letterbox with fill "
            f"{merged['fill_color']}), which the shared decode stage does not reproduce"
        )
    pre = Preprocess(
        input_size=merged["size"],
        crop_pct=1.0,
        crop_mode=_CROP_MODES[merged["resize_mode"]],
        interpolation=str(merged["interpolation"]),
        mean=tuple(float(v) for v in merged["mean"]),
        std=tuple(float(v) for v in merged["std"]),
    )
    return pre, merged


def resolve_open_clip(spec: str, name: str) -> ModelSpec:
    """``<arch>[/<pretrained>][@random][?templates=7|80]`` -> ModelSpec (no weights loaded).

    A bare architecture means its first pretrained tag in open_clip's registry.
    """
    import open_clip

    name, _, query = name.partition("?")
    templates = _parse_options(spec, query)
    name, random_weights = split_random(name)
    architecture, _, tag = name.partition("/")
    architectures = open_clip.list_models()
    if architecture not in architectures:
        raise UserError(
            f"unknown open_clip architecture {architecture!r}{close_matches_hint(architecture, architectures)}"
        )
    tags = open_clip.list_pretrained_tags_by_model(architecture)
    if tag and tag not in tags:
        hint = f"; its tags: {', '.join(tags)}" if tags else "; it has no pretrained weights"
        raise UserError(f"open_clip architecture {architecture!r} has no pretrained tag {tag!r}{hint}")
    if not tag and not random_weights:
        if not tags:
            raise UserError(
                f"open_clip architecture {architecture!r} has no pretrained weights; use "
                f"open_clip:{architecture}@random for its random-weight architecture"
            )
        tag = tags[0]
    model_cfg = copy.deepcopy(open_clip.get_model_config(architecture))
    tag_cfg = dict(open_clip.get_pretrained_cfg(architecture, tag)) if tag else {}
    pre, merged = _preprocess(model_cfg, tag_cfg, spec)
    imagenet_classnames()  # fails at resolve time if open_clip's class list is not the 1,000 ImageNet names
    return ModelSpec(
        spec=spec,
        source="open_clip",
        name=architecture,
        pretrained_tag=None if random_weights else tag,
        pretrained=not random_weights,
        preprocess=pre,
        pretrained_cfg={
            "model_cfg": model_cfg,
            "pretrained_tag_cfg": tag_cfg,
            "preprocess_cfg": merged,
            "quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
            "templates": templates,
            "logit_scale": LOGIT_SCALE,
            "open_clip_version": open_clip.__version__,
        },
        variant=None if templates == "7" else f"templates{templates}",
    )


def clip_architecture(ms: ModelSpec) -> nn.Module:
    """The open_clip model with random weights (seeded by the caller), built on the current default device."""
    import open_clip

    device = torch.empty(0).device
    return open_clip.create_model(
        ms.name, pretrained=None, device=device, force_quick_gelu=ms.pretrained_cfg.get("quick_gelu", False)
    )


def _load_clip(ms: ModelSpec) -> nn.Module:
    import open_clip

    if not ms.pretrained:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return clip_architecture(ms)
    try:
        return open_clip.create_model(
            ms.name, pretrained=ms.pretrained_tag, force_quick_gelu=ms.pretrained_cfg.get("quick_gelu", False)
        )
    except Exception as exc:  # hub/network failures surface as many exception types
        raise UserError(
            f"could not load open_clip weights {ms.name}/{ms.pretrained_tag} ({type(exc).__name__}); on an offline "
            "machine pre-stage them in the Hugging Face cache (HF_HOME) first"
        ) from exc


def class_embeddings(clip_model: nn.Module, tokenizer, classnames: tuple[str, ...], templates: tuple[str, ...],
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """``(C, D) float32`` unit class vectors: normalize(mean over templates of normalize(text embedding))."""
    vectors = []
    with torch.no_grad():
        for start in range(0, len(classnames), TEXT_BATCH_CLASSES):
            names = classnames[start : start + TEXT_BATCH_CLASSES]
            texts = [template.format(c) for c in names for template in templates]
            emb = clip_model.encode_text(tokenizer(texts).to(device)).float()
            emb = F.normalize(emb, dim=-1).view(len(names), len(templates), -1).mean(dim=1)
            vectors.append(F.normalize(emb, dim=-1))
    return torch.cat(vectors)


def cache_dir() -> Path:
    """Folder of the on-disk text-embedding cache: ``$UEBENCH_CACHE/clip_text`` or ``~/.cache/uebench/clip_text``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "uebench"
    return Path(root) / "clip_text"


def _cache_key(ms: ModelSpec, templates: tuple[str, ...], classnames: tuple[str, ...]) -> str:
    payload = {
        "model_id": ms.model_id,
        "pretrained_cfg": ms.pretrained_cfg,
        "templates": templates,
        "classnames": classnames,
        "torch": torch.__version__ if not ms.pretrained else None,  # random init depends on torch's RNG use
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cached_class_embeddings(ms: ModelSpec, clip_model: nn.Module) -> torch.Tensor:
    """The model's ``(1000, D) float32`` class vectors: memory cache, then disk cache, else computed and saved."""
    import open_clip

    templates = zero_shot_templates(ms.pretrained_cfg.get("templates", "7"))
    classnames = imagenet_classnames()
    key = _cache_key(ms, templates, classnames)
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    path = cache_dir() / f"{ms.model_id}-{key[:16]}.pt"
    vectors = None
    if path.is_file():
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a corrupt or foreign file is recomputed and overwritten
            loaded = None
        if isinstance(loaded, torch.Tensor) and loaded.ndim == 2 and loaded.shape[0] == IMAGENET_NUM_CLASSES:
            vectors = loaded.float()
    if vectors is None:
        tokenizer = open_clip.get_tokenizer(ms.name)
        device = next(clip_model.parameters()).device
        vectors = class_embeddings(clip_model, tokenizer, classnames, templates, device).cpu()
        with atomic_output(path) as tmp:
            torch.save(vectors, tmp)
    _MEMORY_CACHE[key] = vectors
    return vectors


class ClipZeroShot(nn.Module):
    """An open_clip model as an ImageNet-1k classifier: ``(B, 3, S, S) normalised -> (B, 1000) float32 logits``.

    logits = 100 · cos(image embedding, class vector), computed in fp32 with autocast disabled.
    """

    def __init__(self, clip_model: nn.Module, vectors: torch.Tensor):
        super().__init__()
        self.clip = clip_model
        self.register_buffer("class_vectors", vectors.float().clone())
        scale = getattr(clip_model, "logit_scale", None)
        self.learned_logit_scale = float(scale.detach().exp()) if isinstance(scale, torch.Tensor) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embedding(self.clip.encode_image(x))

    def logits_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` image embedding (``clip.encode_image``) -> ``(B, 1000) float32`` logits 100 · cos."""
        with torch.autocast(device_type=embedding.device.type, enabled=False):
            unit = F.normalize(embedding.float(), dim=-1)
            return LOGIT_SCALE * unit @ self.class_vectors.T


def build_zero_shot(ms: ModelSpec) -> ClipZeroShot:
    """Load the open_clip model of ``ms`` and attach its cached class vectors (eval mode, CPU)."""
    clip_model = _load_clip(ms).eval()
    return ClipZeroShot(clip_model, cached_class_embeddings(ms, clip_model))
