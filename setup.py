"""Build the `_scoring` Cython kernels against NumPy.

Flags: `-O3` plus `-fno-math-errno` so gcc may vectorize the per-container loops
(errno-setting libm calls block that); no `-ffast-math`, which would break the NaN
handling the kernels rely on for missing samples. `-ffp-contract=off`: no fused
multiply-adds, so the window kernel's vector clones (AVX2/AVX-512, which have FMA)
and its scalar paths round alike: a series' statistics are the same bits whichever
loop ran (whatever its neighbours in a chunk did) and on every x86-64 machine. The
kernel is bound by memory traffic, so this costs nothing measurable.
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
if os.environ.get("DA_NATIVE") == "1":  # opt-in: not portable across machines
    compile_args.append("-march=native")

extensions = [
    Extension(
        f"_scoring.{os.path.splitext(os.path.basename(path))[0]}",
        [path],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    )
    for path in sorted(glob.glob("_scoring/*.pyx"))
    # DA_ONLY=_kernel builds just that module (handy while editing one kernel)
    if os.environ.get("DA_ONLY") in (None, "", os.path.basename(path)[:-4])
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
)
