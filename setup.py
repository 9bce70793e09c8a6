"""Build the optional C fast path of the X25519 PSI hot loops (``psi._x25519_batch``).

Everything else is declared in pyproject.toml. The extension is optional: without a C compiler or
GMP's headers the install still succeeds and ``psi.x25519`` uses its Python reference path
(``psi.x25519.BACKEND`` says which one is active).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "psi._x25519_batch",
            ["psi/_x25519_batch.c"],
            libraries=["gmp"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
