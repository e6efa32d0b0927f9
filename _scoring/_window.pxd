# cython: language_level=3
"""Declarations of `_window.RollingWindow`, shared with the scoring kernel.

`_kernel.score_tick` keeps its five trend windows (overall, cpu, memory, network
and response time) in `RollingWindow` objects and pushes into them through
`push_ptr`, the same code `RollingWindow.push` runs: there is one rolling-window
implementation, and the kernel benchmark's "same work" section times it. The
kernel reads a window's rows (`_state`, `_out`, `_cnt`) directly, by the enums
below.
"""
cimport cython

cdef enum:
    # series per chunk: a chunk's scratch stays in L1
    CHUNK = 256
    # rows of the state array
    R_K = 0
    R_S1 = 1
    R_C1 = 2
    R_S2 = 3
    R_C2 = 4
    R_SJ = 5
    R_CJ = 6
    R_EW = 7
    R_SRTT = 8
    R_RV = 9
    N_STATE = 10
    # rows of the output array (the EWMA output is the state row R_EW)
    O_MEAN = 0
    O_STD = 1
    O_SLOPE = 2
    O_THR = 3
    N_OUT = 4
    # chunk modes beyond 0..H (the count shared by a uniform chunk)
    MODE_MIXED = -1
    # the coefficient vector handed to the loops
    CF_HM1 = 0      # n - 1: index of the newest sample
    CF_INV_N = 1    # 1 / n
    CF_INV_NM1 = 2  # 1 / (n - 1)
    CF_HALF = 3     # (n - 1) / 2: mean index
    CF_INV_D = 4    # 12 / (n (n^2 - 1)) = 1 / sum((j - mean j)^2)
    CF_RATIO_N = 5  # RATIO * n
    CF_A_EW = 6
    CF_A_JK = 7
    CF_B_JK = 8
    CF_K_JK = 9
    N_CF = 10


@cython.final
cdef class RollingWindow:
    cdef readonly Py_ssize_t n_series
    cdef readonly Py_ssize_t window
    cdef readonly double ewma_alpha
    cdef readonly double jk_alpha
    cdef readonly double jk_beta
    cdef readonly double jk_k
    cdef readonly Py_ssize_t refresh_every
    cdef readonly unsigned long long pushes
    cdef Py_ssize_t _head          # ring row the next push writes
    cdef double _cf_full[N_CF]

    cdef object _ring_arr, _state_arr, _out_arr, _cnt_arr, _lag_arr, _mode_arr
    cdef object _scratch_arr, _col_arr, _xbuf_arr
    cdef tuple _views
    cdef object _count_view

    cdef double[:, ::1] _ring      # (H, n_series), time-major
    cdef double[:, ::1] _state     # (N_STATE, n_series)
    cdef double[:, ::1] _out       # (N_OUT, n_series): mean, std, slope, threshold
    cdef int[::1] _cnt             # samples in the window, 0..H
    cdef int[::1] _lag             # rows the series is behind the ring head, 0..H-1
    cdef int[::1] _mode            # per chunk: the common count of an in-step
                                   # chunk, or MODE_MIXED
    cdef double[:, ::1] _scratch   # (2, CHUNK): samples for a mixed chunk, flags
    cdef double[::1] _col          # (H,): one series' window, for rotations
    cdef double[::1] _xbuf         # (n_series,): a strided input, made contiguous

    # one push of n_series contiguous samples: what `push` runs after its checks
    cdef void push_ptr(self, const double* x) noexcept nogil

    cdef int _allocate(self, Py_ssize_t n_series, Py_ssize_t window) except -1
    cdef void _set_modes(self) noexcept nogil
    cdef void _push(self, const double* x) noexcept nogil
    cdef int _uniform(self, Py_ssize_t c0, Py_ssize_t m) noexcept nogil
    cdef void _mixed(self, const double* x, Py_ssize_t g, Py_ssize_t c0,
                     Py_ssize_t m) noexcept nogil
    cdef void _realign(self, Py_ssize_t i, Py_ssize_t g) noexcept nogil
    cdef void _warm_add(self, Py_ssize_t i, double x, Py_ssize_t g) noexcept nogil
    cdef void _recompute(self, Py_ssize_t i) noexcept nogil
    cdef void _finalize(self, Py_ssize_t i) noexcept nogil
