"""The registry of model families, without importing any family (so without torch): a family is *declared* here by
name, with the module that defines its class and the module of its own options (`declare_family`, in
``pdfgc/families/__init__.py``), and *registered* when that module is imported (its class carries
`@register_family`, `pdfgc.families.base`). A lookup that needs a family's class imports its module then; the
options (`family_options`) are read from the light options module alone, so the CLI's parser and `AnimateOptions`
are built without torch (`pdfgc animate` imports torch once the job starts)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CheckpointError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from .base import ModelFamily

_REGISTRY: dict[str, type[ModelFamily]] = {}


@dataclass(frozen=True)
class FamilyTraining:
    """What a family trains, as `pdfgc train` shows it: its `--config` names, its `--stage` names (none: one run),
    one phrase for the help, and its own flags. Declared in the family's light options module (no torch), so the
    train parser is built without importing the family; the class reads it as `ModelFamily.training`."""

    configs: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    help: str = ""
    add_arguments: Callable | None = None   # (argparse group) -> None: the family's own `pdfgc train` flags


@dataclass(frozen=True)
class _Declared:
    module: str  # imports the family's class (registers it)
    options: str | None  # "module:Class" of its own AnimateOptions fields
    training: str | None = None  # "module:NAME" of its FamilyTraining


_DECLARED: dict[str, _Declared] = {}  # declaration order: the default's first


def declare_family(name: str, module: str, options: str | None = None, training: str | None = None) -> None:
    """Names a family before it is imported: `module` defines (and registers) its class, `options` ("module:Class")
    is its options dataclass and `training` ("module:NAME") its `FamilyTraining`, both importable without the
    family."""
    _DECLARED[name] = _Declared(module, options, training)


def _import_attr(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def register_family(cls: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator: names a family once, at its definition (timm's habit). Its weights format and training
    configurations must not collide with another family's (a lookup must find exactly one)."""
    for other in _REGISTRY.values():
        if other.name == cls.name:
            continue
        if other.format == cls.format:
            raise ValueError(f"family {cls.name}: weights format '{cls.format}' is already {other.name}'s")
        shared = set(other.training.configs) & set(cls.training.configs)
        if shared:
            raise ValueError(f"family {cls.name}: --config {', '.join(sorted(shared))} already trains {other.name}")
    decl = _DECLARED.get(cls.name)
    if decl is not None and decl.options is not None and _import_attr(decl.options) is not cls.options:
        raise ValueError(f"family {cls.name}: its options class is not the declared {decl.options}")
    if decl is not None and decl.training is not None and _import_attr(decl.training) is not cls.training:
        raise ValueError(f"family {cls.name}: its training is not the declared {decl.training}")
    _REGISTRY[cls.name] = cls
    return cls


def _families() -> list[type[ModelFamily]]:
    """Every family's class (declared ones imported now), the declared in declaration order (the default's
    first), then any registered without a declaration."""
    declared = [family_class(name) for name in _DECLARED]
    return declared + [cls for name, cls in _REGISTRY.items() if name not in _DECLARED]


def list_families() -> list[str]:
    """Names of the declared and registered families (none is imported for this): what conformance tests and
    lookups iterate over."""
    return sorted(set(_DECLARED) | set(_REGISTRY))


def family_class(name: str) -> type[ModelFamily]:
    """The class of family `name`; a declared family's module is imported (registering it) on first use."""
    if name not in _REGISTRY and name in _DECLARED:
        importlib.import_module(_DECLARED[name].module)
        if name not in _REGISTRY:
            raise ValueError(f"model family '{name}': {_DECLARED[name].module} registered no family of that name")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model family '{name}' (known: {', '.join(list_families())})") from None


def family_options(name: str) -> type | None:
    """Family `name`'s own options dataclass (`ModelFamily.options`), without importing the family when it was
    declared with its options module."""
    decl = _DECLARED.get(name)
    if decl is not None and name not in _REGISTRY:
        return _import_attr(decl.options) if decl.options is not None else None
    return family_class(name).options


def family_training(name: str) -> FamilyTraining:
    """Family `name`'s `FamilyTraining`, without importing the family when it was declared with it."""
    decl = _DECLARED.get(name)
    if decl is not None and name not in _REGISTRY and decl.training is not None:
        return _import_attr(decl.training)
    return family_class(name).training


def family_trainings() -> list[tuple[str, FamilyTraining]]:
    """(name, training) of every family, the declared in declaration order (the default's first), then any
    registered without a declaration; a declared family with its training declared is not imported."""
    names = list(_DECLARED) + [n for n in _REGISTRY if n not in _DECLARED]
    return [(n, family_training(n)) for n in names]


def family_of(model) -> type[ModelFamily]:
    """The family class of a loaded model (`model.family`, default "pdfgc": the PD-FGC networks). A declared
    family is imported (and registers itself) the first time it is looked up."""
    return family_class(getattr(model, "family", "pdfgc"))


def family_for(model, device) -> ModelFamily:
    """The family adapter of a loaded model, on `device` (a torch.device)."""
    return family_of(model)(model, device)


def known_formats() -> str:
    """ "'pdfgc' (pdfgc), 'pdfgc-meshwarp' (meshwarp)": the weights formats the registry reads, for messages."""
    return ", ".join(f"'{c.format}' ({c.name})" for c in sorted(_families(), key=lambda c: c.format))


def family_for_format(fmt: str, path: str | os.PathLike) -> type[ModelFamily]:
    """The family whose weights files carry `format: fmt` in their metadata; CheckpointError naming the file and
    the known formats otherwise."""
    for cls in _families():
        if cls.format == fmt:
            return cls
    what = f"format '{fmt}'" if fmt else "no 'format' entry in its metadata"
    raise CheckpointError(
        f"{path}: not a weights file of a known model family ({what}; known formats: "
        f"{known_formats()}); official .pth checkpoints are loaded from their folder with "
        "--official-checkpoints DIR, or converted once with `pdfgc convert-official DIR -o FILE`"
    )


def train_configs() -> list[str]:
    """Every `pdfgc train --config` name, family by family (declaration order: the default's first)."""
    return [c for _, t in family_trainings() for c in t.configs]


def train_stages() -> list[str]:
    """Every `pdfgc train --stage` name of the registered families."""
    return [s for _, t in family_trainings() for s in t.stages]


def family_for_config(config: str) -> type[ModelFamily]:
    """The family that trains the configuration `config` (`pdfgc train --config`); InputError otherwise."""
    for name, t in family_trainings():
        if config in t.configs:
            return family_class(name)
    raise InputError(f"--config {config}: no model family trains it (known: {', '.join(train_configs())})")


def family_for_stage(stage: str) -> type[ModelFamily] | None:
    """The family that declares the training stage `stage` (None when none does)."""
    return next((family_class(n) for n, t in family_trainings() if stage in t.stages), None)
