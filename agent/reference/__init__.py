"""Plain NumPy/Python references of the compiled kernels in `_scoring`.

Slow on purpose: each statistic is recomputed from its window, so the code reads
like the formulas. Tests and benchmarks hold the kernels to these modules
(`scoring` for `_scoring._kernel`, `window` for `_scoring._window`).
"""
