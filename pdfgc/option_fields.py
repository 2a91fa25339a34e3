"""How an animation option is declared, once, and what is generated from the declarations: the `pdfgc animate`
flags (`add_option_arguments` / `options_from_args`) and the web page's option fields (`web_fields`,
`web_value`). LivePortrait's "CLI arguments generated from config dataclasses", diffusers' typed configs.

An option is a dataclass field made with `option(default, help=..., group=...)`: its flag (``--name-with-dashes``
unless named), help, type, choices and metavar for argparse, its web widget (`Web`) and the family that reads it
(None: every family). The shared options are `pdfgc.options.SharedOptions`; a family declares its own in
``families/<name>/options.py`` and names the class as its `ModelFamily.options`.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

# the `pdfgc animate` argument groups, in the order --help shows them: key -> title
ARGUMENT_GROUPS = {
    "sources": "factor sources (VIDEO, FRAMES FOLDER, IMAGE, 'still' = from the portrait, 'off' = zero code)",
    "intensities": "intensities (code multipliers; defaults are the official ones)",
    "timing": "timing",
    "output": "output and speed",
    "controls": "explicit controls (physical values; each overrides only its own part of the code, the rest follows "
                "the sources above; all but --lip-level/--mute/--emotion-reference need a fitted mapping: see "
                "fit-controls)",
}


@dataclass(frozen=True)
class Web:
    """An option's field on the web page: a `widget` ("slider", "radio", "checkbox") on tab `tab`.

    choices: the radio's (label, value) pairs (default: the option's choices, each its own label); range: the
    slider's (low, high, step); accept: the (low, high) a typed number may take (the page's own bound, wider than
    the slider); value: the page's initial value when it is not the option's default (None); factor: the page's initial
    value is the model family's multiplier for this factor; shown(model): whether this model shows the field."""

    widget: str
    tab: str
    label: str
    choices: tuple = ()
    range: tuple = ()
    accept: tuple | None = None
    value: Any = None               # None: the option's default
    factor: str | None = None
    shown: Callable[[Any], bool] | None = None
    row: str | None = None          # fields with the same row key sit side by side


@dataclass(frozen=True)
class Option:
    """One option's declaration (in its dataclass field's metadata, key "option")."""

    help: str | None = None
    group: str | None = None        # ARGUMENT_GROUPS key; None: not a `pdfgc animate` flag
    flag: str | None = None         # default: "--" + the field name with dashes
    type: Callable | None = None    # argparse type (numbers); None: a string, or a switch for a bool
    choices: tuple | None = None
    metavar: str | None = None
    invert: bool = False            # a store_true flag that sets the option False (--quiet, --no-pose-smoothing)
    negatable: bool = False         # --x / --no-x (argparse.BooleanOptionalAction)
    family: str | None = None       # the family that reads it (None: every family)
    web: Web | None = None


def option(default, **declaration) -> Any:
    """A dataclass field with its declaration: ``option(1.0, help="...", group="intensities", type=float)``."""
    return dataclasses.field(default=default, metadata={"option": Option(**declaration)})


def declaration(f: dataclasses.Field) -> Option | None:
    return f.metadata.get("option")


def declared(cls) -> list[tuple[dataclasses.Field, Option]]:
    """(field, declaration) for every declared option of dataclass `cls`, in field order."""
    return [(f, declaration(f)) for f in dataclasses.fields(cls) if declaration(f) is not None]


def flag_of(f: dataclasses.Field, decl: Option) -> str:
    return decl.flag or "--" + f.name.replace("_", "-")


def argument_groups(parser: argparse.ArgumentParser) -> dict:
    """{key: argparse group} of ARGUMENT_GROUPS, made in their order (so --help lists them so)."""
    return {key: parser.add_argument_group(title) for key, title in ARGUMENT_GROUPS.items()}


def add_option_arguments(parser: argparse.ArgumentParser, cls, groups: dict | None = None,
                         names: tuple[str, ...] | None = None) -> dict:
    """The flags of the declared options of `cls` (all with a group, or only `names`, those in `parser` itself),
    in ARGUMENT_GROUPS order; -> {group key: argparse group} (`groups` is filled and reused)."""
    groups = {} if groups is None else groups
    fields = [(f, d) for f, d in declared(cls) if (d.group is not None if names is None else f.name in names)]
    order = list(ARGUMENT_GROUPS)
    if names is None:
        fields.sort(key=lambda fd: order.index(fd[1].group))
    for f, d in fields:
        if names is None:
            if d.group not in groups:
                groups[d.group] = parser.add_argument_group(ARGUMENT_GROUPS[d.group])
            target = groups[d.group]
        else:
            target = parser
        kw: dict[str, Any] = {"dest": f.name, "help": d.help}
        if d.invert:
            kw.update(action="store_false", default=f.default)
        elif d.negatable:
            kw.update(action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kw.update(default=f.default)
            for k in ("type", "choices", "metavar"):
                if getattr(d, k) is not None:
                    kw[k] = list(getattr(d, k)) if k == "choices" else getattr(d, k)
        target.add_argument(flag_of(f, d), **kw)
    return groups


def options_from_args(args: argparse.Namespace, cls) -> dict:
    """{field: value} of the declared options of `cls` that `args` holds (their flags' values)."""
    return {f.name: getattr(args, f.name) for f, _ in declared(cls) if hasattr(args, f.name)}


# ---- the web page ------------------------------------------------------------------------------------------------
def web_fields(cls, tab: str | None = None) -> list[tuple[str, Option, Any]]:
    """(name, declaration, option default) of the options of `cls` with a web field (on `tab`), in field order."""
    return [(f.name, d, f.default) for f, d in declared(cls) if d.web is not None and (tab is None or d.web.tab == tab)]


def web_initial(d: Option, default, family) -> Any:
    """The value a web field starts at for a model of `family`."""
    w = d.web
    if w.factor is not None:
        return family.intensity(w.factor)
    return default if w.value is None else w.value


def web_value(name: str, d: Option, default, raw, family) -> Any:
    """The option value of a web field's `raw` value (empty: its initial value); InputError when a number is
    outside the page's bound."""
    import math

    from .errors import InputError
    if raw is None or raw == "":
        return web_initial(d, default, family)
    if d.web.widget == "checkbox":
        return bool(raw)
    if d.web.widget == "slider":
        x = float(raw)
        lo, hi = d.web.accept if d.web.accept is not None else d.web.range[:2]
        if not math.isfinite(x) or not lo <= x <= hi:
            raise InputError(f"{name.replace('_', ' ')}: {x} is outside {lo:g}..{hi:g}")
        return x
    return raw
