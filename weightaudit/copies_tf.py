"""The TensorFlow copy of a Hugging Face model (``tf_model.h5``) next to its PyTorch weights.

transformers names a TF weight ``tf_bert_model/bert/encoder/layer_._0/attention/self/query/kernel:0`` and the
PyTorch one ``bert.encoder.layer.0.attention.self.query.weight``. ``tf_key`` maps the first onto the second the
way transformers' TF/PT cross-loading does: ``:0`` dropped, ``_._`` read as a level, the first level (the Keras
model's name) dropped, ``kernel``/``gamma``/``embeddings`` -> ``weight`` and ``beta`` -> ``bias``, levels joined
with dots. A name without ``/`` is kept as it is (an HDF5 file of dotted names is already PyTorch-named).

A dense ``kernel`` is stored ``[in, out]`` where PyTorch stores ``[out, in]``; a conv kernel ``[k.., in, out]``
where PyTorch stores ``[out, in, k..]``: ``permutation`` gives the axes that turn the TF shape into the PyTorch
one. Such a tensor's values are compared by hashing its transposed bytes (``transposed_digest``), which needs it
whole in memory: up to ``TRANSPOSE_LIMIT_BYTES``, beyond that it is reported as not compared.
"""

from __future__ import annotations

from pathlib import Path

from weightaudit.model import TensorInfo, dtype_nbytes, element_count

__all__ = ["tf_key", "permutation", "transposed_digest", "TRANSPOSE_LIMIT_BYTES"]

TRANSPOSE_LIMIT_BYTES = 256 * 1024 * 1024
_LAST = {"kernel": "weight", "pointwise_kernel": "weight", "depthwise_kernel": "weight", "gamma": "weight",
         "embeddings": "weight", "beta": "bias"}
_KERNELS = ("kernel", "pointwise_kernel", "depthwise_kernel")


def tf_key(name: str) -> str:
    if "/" not in name:
        return name[:-2] if name.endswith(":0") else name
    text = name[:-2] if name.endswith(":0") else name
    levels = [level for level in text.replace("_._", "/").split("/") if level][1:]
    if not levels:
        return text
    levels[-1] = _LAST.get(levels[-1], levels[-1])
    return ".".join(levels)


def permutation(name: str, rank: int) -> tuple[int, ...] | None:
    """Axes taking a TF kernel's shape to PyTorch's (``None`` when the tensor is stored the same way)."""
    last = (name[:-2] if name.endswith(":0") else name).rsplit("/", 1)[-1]
    if "/" not in name or last not in _KERNELS or rank < 2:
        return None
    if rank == 2:
        return (1, 0)
    return (rank - 1, rank - 2, *range(rank - 2))      # [k.., in, out] -> [out, in, k..]


def transposed_digest(path: Path, fmt: str, tensor: TensorInfo, axes: tuple[int, ...]) -> str | None:
    """The tensor_hash of the tensor after moving its axes by ``axes``; None when too big or unreadable."""
    import numpy as np

    from weightaudit.formats import iter_tensor_chunks
    from weightaudit.tensor_hash import digest_chunks

    nbytes = dtype_nbytes(tensor.dtype, element_count(tensor.shape))
    if nbytes is None or nbytes > TRANSPOSE_LIMIT_BYTES or nbytes % max(element_count(tensor.shape), 1):
        return None
    itemsize = nbytes // max(element_count(tensor.shape), 1)
    if itemsize not in (1, 2, 4, 8):
        return None
    try:
        data = bytearray()
        for chunk in iter_tensor_chunks(Path(path), fmt, tensor):
            data += chunk
            if len(data) > nbytes:
                return None
        if len(data) != nbytes:
            return None
        order = ">" if tensor.byte_order == "big" else "<"
        array = np.frombuffer(bytes(data), dtype=f"{order}u{itemsize}").astype(f"<u{itemsize}").reshape(tensor.shape)
        moved = np.ascontiguousarray(array.transpose(axes))
        return digest_chunks(tensor.dtype, tuple(moved.shape), [memoryview(moved.tobytes())])
    except (OSError, ValueError, KeyError, MemoryError):
        return None
