"""Capture of the environment a version is made in: Python, platform, CPU, GPUs, packages.

The package list can be long, so it is stored as a blob and the version keeps its digest;
the probe results are cached per process because they do not change under a running program.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

from ..canonical import canonical_json, sha256_digest
from ..domain import EnvironmentInfo


@functools.cache
def installed_packages() -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(name.lower().replace("_", "-"), dist.version)
    return tuple(sorted(found.items()))


@functools.cache
def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


@functools.cache
def _gpus() -> tuple[tuple[str, ...], str | None]:
    """GPU names and the CUDA version the driver reports, when nvidia-smi is present."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return (), None
    try:
        names = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        header = subprocess.run(
            [exe], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return (), None
    cuda = None
    marker = "CUDA Version:"
    if marker in header:
        cuda = header.split(marker, 1)[1].split()[0].strip("|")
    return tuple(n.strip() for n in names.splitlines() if n.strip()), cuda


@functools.cache
def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except (ImportError, OSError):
        return None


@functools.cache
def packages_document() -> tuple[bytes, str]:
    """The package list as canonical JSON bytes, the blob an environment points at, and its
    digest (made once per process, as the list)."""
    document = canonical_json(dict(installed_packages()))
    return document, sha256_digest(document)


def capture_environment(*, seed: int | None, packages_digest: str | None) -> EnvironmentInfo:
    gpus, cuda = _gpus()
    return EnvironmentInfo(
        python=platform.python_version(),
        implementation=sys.implementation.name,
        platform=platform.platform(),
        machine=platform.machine(),
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count(),
        gpus=gpus,
        cuda=cuda,
        seed=seed,
        packages_digest=packages_digest,
        package_count=len(installed_packages()),
        memory_bytes=_memory_bytes(),
    )
