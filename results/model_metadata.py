"""A model's training regime from its name: architecture family, pre-training data and five regime flags.

Pure Python (regular expressions over name tokens), so that the published tables (:mod:`results.reference`) and
our own ``models`` rows (``pipelines.zoo.metadata``, which adds what needs the model libraries: parameter count,
GMACs) are classified by the same rules. The rules are data, below; docs/models.md ("Training regime") lists
them in words.

A name is cut into lower-case **tokens** at ``_ . - ~ @ /``: ``vit_base_patch16_clip_224.laion2b_ft_in12k_in1k``
gives ``vit, base, patch16, clip, 224, laion2b, ft, in12k, in1k``. Then:

- **pre-training data** (``pretraining``): the first token naming a data set other than ImageNet-1k
  (:data:`DATASET_TOKENS`, in token order, so ``in1k_ft_in22k_in1k`` is ``in22k`` and
  ``clip_laion2b_augreg_ft_in12k_in1k`` is ``laion``); else ``in1k`` when a token names ImageNet-1k; else a data set
  implied by a regime word (:data:`IMPLIED_DATASETS`: ``ssl`` YFCC-100M, ``swsl``/``wsl`` Instagram, ``ns`` JFT,
  ``CLIP_`` OpenAI); else ``in1k`` for a tagged timm model or any torchvision / efficientnet_lite model; else NULL
  (unknown). Random-weight models have no pre-training (NULL) and no regime flag.
- **flags**: a token matching :data:`FLAG_TOKENS` sets ``distilled``, ``self_supervised``, ``semi_supervised``,
  ``clip`` or ``adversarial``. ``clip`` is also set by every open_clip model, every ``CLIP_`` name and every
  image-text pre-training set (:data:`IMAGE_TEXT_DATASETS`).
- **family** (:func:`family`): open_clip and ``CLIP_`` models are ``clip``; otherwise the architecture name without
  the prefixes of :data:`FAMILY_PREFIXES`, its leading letters, a trailing version ``v`` dropped
  (``resnetv2`` -> ``resnet``, ``convnextv2`` -> ``convnext``), then :data:`FAMILY_ALIASES`
  (``resnext`` -> ``resnet``, ``regnety`` -> ``regnet``, …).

Names are timm ``architecture.tag`` names (old and new spellings), torchvision ``model`` + weights enum name, open_clip
``arch`` + pretrained tag, the published tables' spellings (``alexnet_torchvision``, ``CLIP_ViT-B~32``,
``vit_base_patch16_224_original``, ``*_facebookSWAG``) and our model ids (``timm-resnet50.a1_in1k``:
:func:`parse_model_id`). An override file (:func:`load_overrides`) replaces any field for the models it names.
"""

from __future__ import annotations

import csv
import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The model sources of our model ids ('<source>-<name>[.<tag>]'); equal to pipelines.zoo.SOURCES minus 'file'
# (a test checks it: results may not import pipelines).
SOURCES = ("timm", "torchvision", "open_clip", "efficientnet_lite")

# token (full match, lower case) -> pre-training data set. First match in token order wins (see the module doc).
DATASET_TOKENS: tuple[tuple[str, str], ...] = (
    (r"in1k|imagenet1k|imagenet", "in1k"),
    (r"in12k", "in12k"),
    (r"in21k|in21ft1k|21k", "in21k"),
    (r"in22k|in22ft1k|22k|imagenet22k", "in22k"),
    (r"ig(\d+[bm])?|instagram|(facebook)?swag|seer", "ig"),  # WSL, SWSL, SWAG, SEER: Instagram images
    (r"jft(\d+m)?", "jft"),
    (r"yfcc(\d+m)?", "yfcc"),
    (r"laion\w*", "laion"),
    (r"openai", "openai"),
    (r"datacomp\w*", "datacomp"),
    (r"dfn\w*", "dfn"),
    (r"metaclip\w*", "metaclip"),
    (r"commonpool\w*", "commonpool"),
    (r"merged2b", "merged2b"),
    (r"m38m", "m38m"),
    (r"webli", "webli"),
    (r"cc12m", "cc12m"),
    (r"lvd\d+m", "lvd"),
)
# Image-text pre-training sets: pre-training on one of them is contrastive image-text (CLIP-style) learning.
IMAGE_TEXT_DATASETS = frozenset({"laion", "openai", "datacomp", "dfn", "metaclip", "commonpool", "merged2b", "webli",
                                 "cc12m"})
# A regime word that names its data set when no token does (the old timm spellings: ssl_resnet50,
# swsl_resnext50_32x4d, ig_resnext101_32x8d, tf_efficientnet_b0_ns; the C-OOD paper's vendored `_original` ViTs,
# which the ViT paper pre-trained on ImageNet-21k; CLIP_ names are OpenAI's CLIP models).
IMPLIED_DATASETS: tuple[tuple[str, str], ...] = (
    (r"ssl", "yfcc"),
    (r"swsl|wsl", "ig"),
    (r"ns", "jft"),
    (r"original", "in21k"),
)
# token (full match) -> the flag it sets.
FLAG_TOKENS: dict[str, str] = {
    # knowledge distillation: DeiT/PiT/ResMLP `distilled`, LeViT/CaiT/XCiT/TinyViT/EfficientFormer/FastViT/RepViT
    # `dist`, BiT `goog_distilled`, PaddleClas SSLD (semi-supervised label distillation)
    "distilled": r"distill\w*|dist|ssld|kd",
    # self-supervised pre-training: DINO(v2/v3), MAE, ConvNeXt-V2 FCMAE, EVA-02 MIM, SEER, BEiT(v2)
    "self_supervised": r"dino(v\d)?|mae|fcmae|mim|seer|beit(v\d)?|ibot|moco\w*|simclr\w*|byol",
    # semi-(weakly-)supervised: Facebook SSL/SWSL, Noisy Student (`ns`), SSLD
    "semi_supervised": r"ssl|swsl|ns|ssld|semi\w*",
    # adversarial training: adv_inception_v3 / tf_adv_in1k, ens_adv_inception_resnet_v2, AdvProp (`ap`)
    "adversarial": r"adv|advprop|ap",
    # CLIP-style image-text pre-training named in the name (vit_*_clip_*, convnext.clip_laion2b, MobileCLIP, TinyCLIP)
    "clip": r"\w*clip\w*",
}
FLAGS = ("distilled", "self_supervised", "semi_supervised", "clip", "adversarial")

# Prefixes that say who trained or ported a model, not what it is (stripped before the family is read).
FAMILY_PREFIXES = ("tf_", "tv_", "gluon_", "legacy_", "ig_", "ssl_", "swsl_", "ens_adv_", "adv_", "dm_", "eca_",
                   "bat_", "timm_", "hf_")
# The leading letters of an architecture name -> its family, where they differ.
FAMILY_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        ("resnext", "wide", "seresnet", "seresnext", "senet", "ecaresnet", "ecaresnext", "skresnet", "skresnext",
         "gcresnet", "gcresnext", "resnetrs", "resnetaa", "resnetblur", "resnext"), "resnet"),
    **dict.fromkeys(("regnetx", "regnety", "regnetz"), "regnet"),
    **dict.fromkeys(("lite",), "efficientnet"),  # efficientnet_lite:lite0
    **dict.fromkeys(("gmixer",), "mixer"),
    "tiny": "tiny_vit",
}
_SPLIT = re.compile(r"[_.\-~@/]+")
_PUBLISHED_TORCHVISION = re.compile(r"^(?P<arch>.+)_torchvision$")
_PUBLISHED_CLIP = re.compile(r"^CLIP_(?P<arch>.+)$")


@dataclass(frozen=True)
class ModelMetadata:
    """A model's training regime (the same columns in ``models`` and ``reference_models``).

    family: architecture family (resnet, convnext, vit, deit, efficientnet, regnet, swin, clip, …); pretraining:
    the pre-training data set (in1k, in12k, in21k, in22k, laion, openai, ig, jft, yfcc, datacomp, …) or None when
    unknown or random weights; flags: distilled, self_supervised, semi_supervised, clip, adversarial; source:
    ``rules`` or ``override`` (a user's override file set at least one field).
    """

    family: str | None
    pretraining: str | None
    distilled: bool = False
    self_supervised: bool = False
    semi_supervised: bool = False
    clip: bool = False
    adversarial: bool = False
    source: str = "rules"

    def row(self) -> dict[str, Any]:
        """The table columns: the fields, with ``source`` as ``metadata_source``."""
        fields = dataclasses.asdict(self)
        return {**{k: v for k, v in fields.items() if k != "source"}, "metadata_source": self.source}


# Columns of ModelMetadata.row(), in the order of the DDL (results/schema.py checks it in a test).
METADATA_COLUMNS = ("family", "pretraining", *FLAGS, "metadata_source")


def tokens(text: str) -> list[str]:
    """Lower-case tokens of ``text`` cut at ``_ . - ~ @ /`` (empty pieces dropped)."""
    return [t for t in _SPLIT.split(text.lower()) if t]


def _first(rules: tuple[tuple[str, str], ...], words: list[str], skip: str | None = None) -> str | None:
    for word in words:
        for pattern, value in rules:
            if value != skip and re.fullmatch(pattern, word):
                return value
    return None


def family(architecture: str, source: str | None = None) -> str:
    """The family of an architecture name (module doc); ``clip`` for open_clip models."""
    if source == "open_clip":
        return "clip"
    name = architecture.lower()
    stripped = True
    while stripped:
        stripped = False
        for prefix in FAMILY_PREFIXES:
            if name.startswith(prefix) and len(name) > len(prefix):
                name, stripped = name[len(prefix):], True
    match = re.match(r"[a-z]+", name)
    if match is None:
        return name
    letters = match.group(0)
    if letters.endswith("v") and name[len(letters):len(letters) + 1].isdigit() and len(letters) > 2:
        letters = letters[:-1]
    return FAMILY_ALIASES.get(letters, letters)


def parse_model_id(model_id: str) -> tuple[str, str, str | None, bool] | None:
    """``(source, name, tag, pretrained)`` of one of our model ids (``timm-resnet50.a1_in1k``,
    ``open_clip-ViT-B-32.openai-templates80``, ``timm-resnet18-random``), or None when ``model_id`` does not start
    with a known source."""
    source, sep, rest = model_id.partition("-")
    if not sep or source not in SOURCES or not rest:
        return None
    pretrained = not rest.endswith("-random")
    rest = rest.removesuffix("-random")
    rest = re.sub(r"-templates\d+$", "", rest)
    name, dot, tag = rest.partition(".")
    return source, name.replace("~", "/"), (tag.replace("~", "/") if dot else None), pretrained


def classify(
    name: str,
    *,
    source: str | None = None,
    tag: str | None = None,
    cfg: Mapping[str, Any] | None = None,
    pretrained: bool = True,
) -> ModelMetadata:
    """The training regime of a model by the rules of the module doc.

    name: an architecture name (``resnet50``), a timm ``architecture.tag``, a published name
    (``alexnet_torchvision``, ``CLIP_ViT-B~32``) or one of our model ids; source: timm | torchvision | open_clip |
    efficientnet_lite when known; tag: the pretrained tag (timm tag, torchvision weights name, open_clip pretrained
    name) when not part of ``name``; cfg: the weights' configuration (``models.pretrained_cfg``): its ``tag`` stands in
    for a missing ``tag``, and its ``hf_hub_id``/``hf_hub``/``url`` words name the pre-training data when the name
    and tag do not; pretrained: False for random weights (no pre-training, no regime flag).
    """
    cfg = cfg or {}
    parsed = parse_model_id(name)
    if parsed is not None:
        source, name, id_tag, id_pretrained = parsed
        tag = tag or id_tag
        pretrained = pretrained and id_pretrained
    published_clip = _PUBLISHED_CLIP.match(name)
    published_tv = _PUBLISHED_TORCHVISION.match(name)
    if published_clip:
        source, name = "open_clip", published_clip.group("arch")
    elif published_tv:
        source, name, tag = "torchvision", published_tv.group("arch"), tag or "IMAGENET1K_V1"
    architecture, dot, name_tag = name.partition(".") if source != "open_clip" else (name, "", "")
    tag = tag or (name_tag if dot else None) or (cfg.get("tag") if isinstance(cfg.get("tag"), str) else None)
    fam = family(architecture, source)
    if not pretrained:
        return ModelMetadata(family=fam, pretraining=None)
    words = tokens(architecture) + tokens(tag or "")
    pretraining = _first(DATASET_TOKENS, words, skip="in1k")
    if pretraining is None and any(re.fullmatch(DATASET_TOKENS[0][0], w) for w in words):
        pretraining = "in1k"
    if pretraining is None and published_clip:
        pretraining = "openai"
    pretraining = pretraining or _first(IMPLIED_DATASETS, words)
    if pretraining is None:
        hub = " ".join(str(cfg[k]) for k in ("hf_hub_id", "hf_hub", "url") if isinstance(cfg.get(k), str))
        pretraining = _first(DATASET_TOKENS, tokens(hub), skip="in1k")
    if pretraining is None and ((source == "timm" and tag) or source in ("torchvision", "efficientnet_lite")):
        pretraining = "in1k"
    flags = {flag: any(re.fullmatch(pattern, w) for w in words) for flag, pattern in FLAG_TOKENS.items()}
    flags["clip"] = flags["clip"] or source == "open_clip" or pretraining in IMAGE_TEXT_DATASETS
    return ModelMetadata(family=fam, pretraining=pretraining, **{f: flags[f] for f in FLAGS})


# ---- override files -------------------------------------------------------------------------------------------

_OVERRIDE_TYPES: dict[str, type] = {"family": str, "pretraining": str, **dict.fromkeys(FLAGS, bool)}
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


@dataclass(frozen=True)
class Overrides:
    """Field values a user sets per model, keyed by model id or name (:func:`load_overrides`)."""

    entries: Mapping[str, Mapping[str, Any]]
    path: str = ""

    def apply(self, metadata: ModelMetadata, *keys: str | None) -> ModelMetadata:
        """``metadata`` with the fields of the first of ``keys`` (model id, ``name.tag``, name, …) this file names;
        ``source`` becomes ``override``. Unchanged when no key is named."""
        for key in keys:
            if key is not None and key in self.entries:
                return dataclasses.replace(metadata, **self.entries[key], source="override")
        return metadata


def _override_value(where: str, field: str, value: Any) -> Any:
    if field not in _OVERRIDE_TYPES:
        raise ValueError(f"{where}: unknown field {field!r}; fields: {', '.join(_OVERRIDE_TYPES)}")
    kind = _OVERRIDE_TYPES[field]
    if kind is bool and isinstance(value, str):
        if value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    if kind is str and isinstance(value, str) and value.strip():
        return value.strip()
    if kind is bool and isinstance(value, bool):
        return value
    raise ValueError(f"{where}: {field} must be {'true or false' if kind is bool else 'a non-empty string'}, "
                     f"got {value!r}")


def load_overrides(path: str | Path) -> Overrides:
    """Read an override file: TOML (``[\"timm-resnet50.a1_in1k\"]`` tables of fields) or CSV (a ``model`` column plus
    field columns; empty cells set nothing). Keys are model ids, ``name.tag`` or names (published names too).

    Fields: family, pretraining (strings), distilled, self_supervised, semi_supervised, clip, adversarial
    (true/false). ValueError with one line for a missing or malformed file, an unknown field or a bad value.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model metadata override file not found: {path}")
    entries: dict[str, dict[str, Any]] = {}
    if path.suffix.lower() == ".toml":
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path.name} is not valid TOML: {exc}") from None
        for key, table in raw.items():
            if not isinstance(table, dict):
                raise ValueError(f'{path.name}: [{key!r}] must be a table of fields, e.g. ["{key}"] distilled = true')
            entries[key] = {f: _override_value(f"{path.name} [{key}]", f, v) for f, v in table.items()}
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "model" not in reader.fieldnames:
                raise ValueError(f"{path.name}: a CSV override file needs a 'model' column (model id or name)")
            for number, row in enumerate(reader, start=2):
                key = (row.pop("model") or "").strip()
                if not key:
                    raise ValueError(f"{path.name}:{number}: empty 'model'")
                entries[key] = {
                    f: _override_value(f"{path.name}:{number}", f, v) for f, v in row.items() if v and v.strip()
                }
    else:
        raise ValueError(f"{path.name}: an override file is .toml or .csv")
    return Overrides(entries, str(path))
