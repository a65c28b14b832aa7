"""Option checks accept every spelling of a valid value and name the option for any other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalib_recsem.options import check_integer, check_number


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.5), np.int64(1), torch.tensor(0.5), torch.tensor(2)])
def test_check_number_accepts_python_numpy_and_0d_torch_reals(value: object) -> None:
    assert check_number("rate", value, minimum=0) == float(value)


@pytest.mark.parametrize("value", [True, np.bool_(True), torch.tensor(True), torch.tensor([0.5]), "0.5", None,
                                   float("nan"), torch.tensor(float("inf")), complex(1, 0), -0.1, torch.tensor(-1.0)])
def test_check_number_refuses_and_names_the_option(value: object) -> None:
    with pytest.raises(ValueError, match=r"rate must be a finite number >= 0, got"):
        check_number("rate", value, minimum=0)


def test_check_number_strict_bound() -> None:
    assert check_number("rate", 1e-9, minimum=0, strict=True) == 1e-9
    with pytest.raises(ValueError, match="> 0"):
        check_number("rate", torch.tensor(0.0), minimum=0, strict=True)


@pytest.mark.parametrize("value", [3, np.int32(3), torch.tensor(3)])
def test_check_integer_accepts_python_numpy_and_0d_torch_integers(value: object) -> None:
    assert check_integer("count", value, minimum=0, maximum=3) == 3


@pytest.mark.parametrize("value", [True, np.bool_(True), torch.tensor(True), 3.0, torch.tensor(3.0),
                                   torch.tensor([3]), 4, -1])
def test_check_integer_refuses_and_names_the_range(value: object) -> None:
    with pytest.raises(ValueError, match=r"count must be an integer in \[0, 3\], got"):
        check_integer("count", value, minimum=0, maximum=3)
