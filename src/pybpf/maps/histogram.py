"""BCC's histogram printers (``print_log2_hist`` / ``print_linear_hist``), same output format."""

from __future__ import annotations

from collections.abc import Callable, Sequence

STARS_MAX = 40
LOG2_INDEX_MAX = 65
LINEAR_INDEX_MAX = 1025


def _stars(val: int, val_max: int, width: int) -> str:
    i = 0
    text = ""
    while True:
        if i > (width * val / val_max) - 1 or i > width - 1:
            break
        text += "*"
        i += 1
    if val > val_max:
        text = text[:-1] + "+"
    return text


def print_log2_hist(vals: Sequence[int], val_type: str = "value",
                    strip_leading_zero: bool | None = False,
                    out: Callable[[str], None] = print) -> None:
    idx_max = -1
    val_max = 0
    for i, v in enumerate(vals):
        if v > 0:
            idx_max = i
        if v > val_max:
            val_max = v
    if idx_max <= 32:
        header = "     %-19s : count     distribution"
        body = "%10d -> %-10d : %-8d |%-*s|"
        stars = STARS_MAX
    else:
        header = "               %-29s : count     distribution"
        body = "%20d -> %-20d : %-8d |%-*s|"
        stars = STARS_MAX // 2
    if idx_max > 0:
        out(header % val_type)
    for i in range(1, idx_max + 1):
        low = (1 << i) >> 1
        high = (1 << i) - 1
        if low == high:
            low -= 1
        val = vals[i]
        if strip_leading_zero:
            if val:
                out(body % (low, high, val, stars, _stars(val, val_max, stars)))
                strip_leading_zero = False
        else:
            out(body % (low, high, val, stars, _stars(val, val_max, stars)))


def print_linear_hist(vals: Sequence[int], val_type: str = "value",
                      strip_leading_zero: bool | None = False,
                      out: Callable[[str], None] = print) -> None:
    idx_max = -1
    val_max = 0
    for i, v in enumerate(vals):
        if v > 0:
            idx_max = i
        if v > val_max:
            val_max = v
    header = "     %-13s : count     distribution"
    body = "        %-10d : %-8d |%-*s|"
    stars = STARS_MAX
    if idx_max >= 0:
        out(header % val_type)
    for i in range(0, idx_max + 1):
        val = vals[i]
        if strip_leading_zero:
            if val:
                out(body % (i, val, stars, _stars(val, val_max, stars)))
                strip_leading_zero = False
        else:
            out(body % (i, val, stars, _stars(val, val_max, stars)))
