"""Type stub for the compiled scoring kernel (`_kernel.pyx`); see its docstrings."""
from typing import Final

import numpy as np
import numpy.typing as npt

from _scoring._window import RollingWindow

_F64 = npt.NDArray[np.float64]
_U8 = npt.NDArray[np.uint8]

FSTATE_FIELDS: Final[dict[str, int]]
ISTATE_FIELDS: Final[dict[str, int]]
PARAMS: Final[tuple[str, ...]]
OUT_ROWS: Final[tuple[str, ...]]
FLAG_ROWS: Final[tuple[str, ...]]
TREND_SERIES: Final[tuple[str, ...]]
WIN_SERIES: Final[int]
NF_: Final[int]
NI_: Final[int]
NP_: Final[int]
JK_ALPHA: Final[float]
JK_BETA: Final[float]
WINDOW_REFRESH: Final[int]

def make_window(
    cap: int, trend_window: int, jk_k: float, refresh_every: int = ...
) -> RollingWindow: ...
def make_windows(
    cap: int, trend_window: int, jk_k: float, refresh_every: int = ...
) -> tuple[RollingWindow, ...]: ...

def score_tick(
    cpu: _F64,
    mem: _F64,
    net: _F64,
    rt: _F64,
    valid: _U8,
    active: _U8,
    now: float,
    params: _F64,
    fstate: _F64,
    istate: npt.NDArray[np.intc],
    hist: _F64,
    best: _F64,
    out: _F64,
    cat: npt.NDArray[np.int8],
    flags: _U8,
    xin: _F64,
    windows: tuple[RollingWindow, ...],
) -> int: ...
def reset_slot(
    fstate: _F64,
    istate: npt.NDArray[np.intc],
    out: _F64,
    cat: npt.NDArray[np.int8],
    flags: _U8,
    slot: int,
    now: float,
    countdown: int,
    overall0: float,
    windows: tuple[RollingWindow, ...],
) -> None: ...
def clear_slot(out: _F64, cat: npt.NDArray[np.int8], flags: _U8, slot: int) -> None: ...
def set_category(
    istate: npt.NDArray[np.intc],
    cat: npt.NDArray[np.int8],
    out: _F64,
    slot: int,
    sundown: bool,
) -> None: ...
def recompute_slot(
    fstate: _F64,
    istate: npt.NDArray[np.intc],
    hist: _F64,
    best: _F64,
    slot: int,
) -> None: ...
def slot_detail(fstate: _F64, istate: npt.NDArray[np.intc], slot: int) -> dict[str, float]: ...
def swrr_fill(weights: _F64, current: _F64, out: npt.NDArray[np.int64]) -> int: ...
def p2c_fill(
    weights: _F64,
    cum: _F64,
    u: _F64,
    load: _F64 | None,
    out: npt.NDArray[np.int64],
) -> int: ...
