"""Builds the optional C statistics kernel (weightaudit/_kernel.c); all metadata lives in pyproject.toml.

``optional=True``: without a working C compiler the build of the extension is skipped with a warning and the
package installs anyway; ``weightaudit.stats_kernels`` then uses its numpy kernel. No ``-march=native``: the
module carries AVX-512, AVX2 and baseline variants of its loops and picks one at import on the running CPU.
"""

import sys

from setuptools import Extension, setup

UNIX_FLAGS = ["-O3", "-fno-strict-aliasing", "-Wno-psabi", "-Wno-missing-field-initializers"]  # never -ffast-math

setup(ext_modules=[Extension(
    "weightaudit._kernel",
    sources=["weightaudit/_kernel.c"],
    depends=["weightaudit/_kernel_core.h", "weightaudit/_kernel_simd.h", "weightaudit/_kernel_x86.h"],
    extra_compile_args=[] if sys.platform == "win32" else UNIX_FLAGS,
    optional=True,
)])
