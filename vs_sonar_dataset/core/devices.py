"""Which torch device a stage computes on (embed, dedup, model checks). torch is imported inside, so every
environment can import this module."""

import re
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from .errors import UserError


def _device_name(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise PydanticCustomError("config", "expected auto, cpu, mps, cuda or cuda:N")
    return value


# a device a config names: checked when the table is read, not when torch first meets it
Device = Annotated[str, AfterValidator(_device_name)]


def resolve_device(device: str) -> str:
    """auto: cuda when torch sees one, else cpu; a cuda device torch cannot see is a user error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but torch sees no CUDA device")
    return device
