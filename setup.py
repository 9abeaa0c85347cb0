"""Build the Cython kernels in _ext/moshpit/ into the moshpit package.

The sources mirror the package layout (_ext/moshpit/codec.pyx -> moshpit.codec) so
that Cython finds each module's .pxd and cross-module cimports resolve.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = ["codec", "replay", "seqtrack", "retransmit", "protect", "vtscan"]

extensions = [
    Extension(f"moshpit.{name}", [f"_ext/moshpit/{name}.pyx"]) for name in KERNELS
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["_ext"],
        language_level=3,
        compiler_directives={
            # Bounds checks stay on: hot paths index raw pointers after explicit
            # length checks, and everything else is better safe than fast.
            "cdivision": True,
            "embedsignature": True,
            "binding": True,
        },
    ),
    package_data={"moshpit": ["py.typed", "*.pyi"]},
    exclude_package_data={"moshpit": ["*.c", "*.pyx", "*.pxd"]},
)
