"""Inference configs (``kind=config`` versions): reading the file and refusing floating
provider aliases.

A config must name exact model identifiers: a value under a key ``model``, ``models``,
``model_id`` or ending in ``_model`` that is ``latest`` or ends in ``-latest``, ``:latest``,
``@latest`` or ``/latest`` is refused, because the model behind it can change silently.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from .errors import InvalidInput
from .limits import LIMITS

_FLOATING_SUFFIXES = ("-latest", ":latest", "@latest", "/latest")


def _is_model_key(key: str) -> bool:
    k = key.lower()
    return k in {"model", "models", "model_id", "model_name"} or k.endswith(("_model", "_model_id"))


def floating_identifiers(config: Any, path: str = "") -> list[str]:
    """Dotted paths of model identifiers in *config* that point at a floating alias."""
    found: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            here = f"{path}.{key}" if path else str(key)
            if _is_model_key(str(key)):
                values = value if isinstance(value, list) else [value]
                for v in values:
                    if isinstance(v, str) and (
                        v.strip().lower() == "latest"
                        or v.strip().lower().endswith(_FLOATING_SUFFIXES)
                    ):
                        found.append(f"{here}={v}")
            found.extend(floating_identifiers(value, here))
    elif isinstance(config, list):
        for i, item in enumerate(config):
            found.extend(floating_identifiers(item, f"{path}[{i}]"))
    return found


def check_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict) or not config:
        raise InvalidInput("an inference config must be a non-empty mapping", field="config")
    floating = floating_identifiers(config)
    if floating:
        raise InvalidInput(
            f"inference config points at a floating model alias ({floating[0]}); pin an exact "
            "model identifier such as a dated snapshot",
            field="config",
        )
    return config


def read_config(path: Path) -> dict[str, Any]:
    """Read a JSON, TOML or YAML inference config file."""
    try:
        size = path.stat().st_size
    except OSError:
        raise InvalidInput(
            f"config file {path} does not exist or cannot be read", field="path"
        ) from None
    if size > LIMITS["config_bytes"]:
        raise InvalidInput(f"config file {path} is larger than 1 MiB", field="path")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc}", field="path") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data: Any = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            raise InvalidInput(
                f"config file {path} must end in .json, .toml, .yaml or .yml", field="path"
            )
    except InvalidInput:
        raise
    except Exception as exc:  # each parser has its own error class; all mean "malformed"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"config file {path} is malformed: {first}", field="path") from None
    return check_config(data)
