"""Helpers the torch-based encoder plug-ins share: device and dtype choice, and where a model comes from.

torch is imported inside the functions, so every environment can import this module.
"""

from pathlib import Path

from ..core.errors import UserError

TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def resolve_dtype(dtype: str, device: str):
    """The torch dtype of an [embed] dtype: auto is fp16 on cuda, fp32 elsewhere."""
    import torch

    if dtype == "auto":
        dtype = "fp16" if device.startswith("cuda") else "fp32"
    return getattr(torch, TORCH_DTYPES[dtype])


def dtype_name(dtype) -> str:
    """torch.float16 -> "float16", as describe() records it."""
    return str(dtype).removeprefix("torch.")


def model_source(model: str) -> str:
    """A local model folder, or a Hub model id. A value that can only be a path (absolute, relative with a
    folder in it, `.`/`~`) and is not a folder is a user error here rather than a Hub lookup later."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise UserError(f"{model}: is a file; give the model's folder")
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        raise UserError(f"{model}: model folder not found")
    return model


def model_label(config) -> str:
    """The name recorded in each row's `encoder` column: `model_name`, else the Hub id, else the folder's own
    name (a local path would tie the release's bytes to where the run lived)."""
    return config.model_name or (Path(config.model).name if Path(config.model).expanduser().is_dir() else config.model)


def load_error(what: str, model: str, e: Exception) -> UserError:
    """One line for a model or tokenizer that transformers could not load (no such Hub id, offline, broken
    folder)."""
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return UserError(f"cannot load {what} {model!r}: {detail} (give a local model folder, or a Hub id that is "
                     "cached or reachable)")
