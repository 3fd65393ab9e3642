"""Which torch device a stage computes on (embed, dedup, model checks). torch is imported inside, so every
environment can import this module."""

from .errors import UserError


def resolve_device(device: str) -> str:
    """auto: cuda when torch sees one, else cpu; a cuda device torch cannot see is a user error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but torch sees no CUDA device")
    return device
