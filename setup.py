"""The optional native part of modelvault: `audit verify`'s fast scan of a SQLite log
(src/modelvault/_fastscan.c, linked with SQLite's and OpenSSL's C libraries). Everything else
is configured in pyproject.toml. Where the part cannot be built (no C compiler, or no
``sqlite3.h`` / OpenSSL headers: Debian's libsqlite3-dev and libssl-dev), the install goes on
without it and the scan runs in Python, slower and with the same verdicts."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "modelvault._fastscan",
            ["src/modelvault/_fastscan.c"],
            libraries=["sqlite3", "crypto"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
