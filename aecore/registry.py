"""Variant registry: a variant registers itself by name; nothing else lists variants.

A variant is a builder ``(ModelConfig, input_dim) -> nn.Module`` plus the defaults it
fills into a config (activation, output, tied, loss, noise, reg, hidden...). The trainer,
the CLI and the dashboard list variants from here, never from an if-chain.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

__all__ = ["VariantSpec", "register", "get_variant", "variant_names", "VARIANTS"]


@dataclass(frozen=True)
class VariantSpec:
    name: str
    builder: Callable  # (ModelConfig, input_dim: int) -> nn.Module
    summary: str
    defaults: dict = field(default_factory=dict)
    # the config fields the variant actually reads (shown in UIs; others are ignored)
    uses: tuple[str, ...] = ()


VARIANTS: dict[str, VariantSpec] = {}


def register(name: str, *, summary: str, defaults: dict | None = None, uses: tuple[str, ...] = ()):
    """Decorator: ``@register("sparse", summary=..., defaults={...})`` on a builder."""

    def deco(builder):
        if name in VARIANTS:
            raise ValueError(f"variant {name!r} is registered twice")
        VARIANTS[name] = VariantSpec(name, builder, summary, dict(defaults or {}), tuple(uses))
        return builder

    return deco


def _ensure_loaded() -> None:
    # importing the model modules runs their @register decorators
    from . import models  # noqa: F401


def variant_names() -> list[str]:
    _ensure_loaded()
    return list(VARIANTS)


def get_variant(name: str) -> VariantSpec:
    _ensure_loaded()
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"variant={name!r} is not registered; choose one of {', '.join(VARIANTS)}") from None
