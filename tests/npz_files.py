"""Input files (npz) that are good or broken in one named way, for the tests of the file
loaders (`mfnn.measure.read_npz` and the builders that use it)."""

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np


class Boom:
    """Unpickling this would raise: proof that nothing is unpickled."""

    def __reduce__(self):
        return (exec, ("raise SystemExit('unpickled!')",))


# every way `write_npz` can break a file (besides "good")
BROKEN_KINDS = (
    "empty", "strings", "nan", "inf_in_one", "complex", "wrong_shape", "pickled_object",
    "npy", "pickle", "garbage", "empty_file", "truncated", "directory", "huge_header",
    "missing",
)  # fmt: skip


def write_npz(path: Path, good: dict[str, np.ndarray], kind: str) -> None:
    """Write at ``path`` the arrays ``good`` as an npz (``kind`` "good") or a file broken
    the way ``kind`` says (one of `BROKEN_KINDS`; "missing" writes nothing)."""
    first = next(iter(good))
    if kind == "good":
        np.savez(path, **good)
    elif kind == "empty":
        np.savez(path, **{k: v[:0] for k, v in good.items()})
    elif kind == "strings":
        np.savez(path, **{k: v.astype(str) for k, v in good.items()})
    elif kind == "nan":
        np.savez(path, **{k: np.full_like(v, np.nan, float) for k, v in good.items()})
    elif kind == "inf_in_one":
        arrays = {k: v.copy() for k, v in good.items()}
        arrays[first].flat[0] = np.inf
        np.savez(path, **arrays)
    elif kind == "complex":
        np.savez(path, **{k: v + 1j for k, v in good.items()})
    elif kind == "wrong_shape":
        np.savez(path, **{k: np.ones((2, 3, 4)) for k in good})
    elif kind == "pickled_object":  # an object array inside the npz
        np.savez(path, **{k: np.array([Boom(), None], dtype=object) for k in good})
    elif kind == "npy":  # a bare .npy under the npz name
        with open(path, "wb") as fh:
            np.save(fh, good[first])
    elif kind == "pickle":
        path.write_bytes(pickle.dumps(Boom()))
    elif kind == "garbage":
        path.write_bytes(b"\x00\xffnot an npz at all" * 8)
    elif kind == "empty_file":
        path.write_bytes(b"")
    elif kind == "truncated":
        np.savez(path, **good)
        path.write_bytes(path.read_bytes()[:150])
    elif kind == "directory":
        path.mkdir()
    elif kind == "huge_header":  # claims 2^40 float64 (8 TiB) in a file of a few bytes
        head = np.lib.format.header_data_from_array_1_0(np.ones(1))
        head["shape"] = (2**40,)
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, head)
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(f"{first}.npy", buf.getvalue() + b"\x00" * 64)
    elif kind != "missing":
        raise AssertionError(kind)
