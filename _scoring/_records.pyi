"""Type stub for the compiled `_scoring._records` (see `_records.pyx`)."""
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

RECORD_FIELDS: Final[tuple[str, ...]]
SNAP_ROWS: Final[int]

def gather_samples(
    samples: Mapping[str, Any],
    slots: dict[str, int],
    cpu: npt.NDArray[np.float64],
    mem: npt.NDArray[np.float64],
    net: npt.NDArray[np.float64],
    rt: npt.NDArray[np.float64],
    valid: npt.NDArray[np.uint8],
) -> None: ...
def build_records(
    cls: type[Any],
    descs: tuple[Any, ...] | None,
    names: list[Any],
    ids: list[str],
    order: npt.NDArray[np.intp],
    out: npt.NDArray[np.float64],
    cat: npt.NDArray[np.int8],
    flags: npt.NDArray[np.uint8],
    codes: tuple[Any, ...],
    cache: list[Any],
    snap: npt.NDArray[np.float64],
    changed_only: bool,
) -> list[Any]: ...
