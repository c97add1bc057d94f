"""JPEG forensics: quantization tables <-> QF, the 8x8 grid and the quantization lattice left in
decoded pixels, and the quantization-constraint projection of a restored image.

Conventions: images are RGB uint8 (H, W, 3) or float in [0, 255]; a grid offset (dy, dx) is
where the first whole 8x8 block starts (a photo cropped by 3 rows and 5 columns after
compression has its grid at (5, 3)); tables are 64 steps in natural (row-major) order. Luma and
chroma use JPEG's own full-range BT.601 conversion (JFIF), not the metrics' studio-range luma.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

# IJG (libjpeg) base tables, natural (row-major) order, Annex K of the JPEG standard.
IJG_LUMA = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ],
    dtype=np.int64,
)
IJG_CHROMA = np.array(
    [
        17,
        18,
        24,
        47,
        99,
        99,
        99,
        99,
        18,
        21,
        26,
        66,
        99,
        99,
        99,
        99,
        24,
        26,
        56,
        99,
        99,
        99,
        99,
        99,
        47,
        66,
        99,
        99,
        99,
        99,
        99,
        99,
    ]
    + [99] * 32,
    dtype=np.int64,
)
LATTICE_MIN_SCORE = 0.05  # an aligned single JPEG scores 0.1 to 0.9; no lattice about 0
LATTICE_MIN_BLOCKS = 32  # fewer whole blocks (a 40x64 crop) than this: too few to tell a lattice from chance
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}  # Pillow's get_sampling codes


def ijg_tables(qf: int) -> tuple[np.ndarray, np.ndarray]:
    """IJG luma and chroma quantization tables (natural order) for quality ``qf`` (1..100)."""
    scale = 5000 // qf if qf < 50 else 200 - 2 * qf
    return tuple(np.clip((t * scale + 50) // 100, 1, 255) for t in (IJG_LUMA, IJG_CHROMA))


_TABLES = {q: ijg_tables(q) for q in range(1, 101)}
_LUMA_BY_QF = np.stack([_TABLES[q][0] for q in range(1, 101)]).astype(np.float64)  # (100, 64)
# Per frequency, the distinct steps of the 100 qualities and which one each quality uses: the
# lattice test runs once per distinct step (4807 of 6400), on the non-zero coefficients only.
_STEPS, _STEP_INDEX = zip(*(np.unique(_LUMA_BY_QF[:, k], return_inverse=True) for k in range(64)), strict=True)
_DCT8 = np.array(
    [[np.sqrt((1 if u == 0 else 2) / 8) * np.cos((2 * x + 1) * u * np.pi / 16) for x in range(8)] for u in range(8)]
)  # orthonormal: the same coefficients as JPEG's DCT before quantization


def qf_from_tables(luma: np.ndarray, chroma: np.ndarray | None = None) -> tuple[int, bool]:
    """The IJG quality whose tables are closest to the given ones, and whether they match exactly."""
    luma = np.asarray(luma, dtype=np.int64).ravel()
    best, best_err = 50, None
    for q, (lt, ct) in _TABLES.items():
        err = np.abs(lt - luma).sum()
        if chroma is not None:
            err += np.abs(ct - np.asarray(chroma, np.int64).ravel()).sum()
        if best_err is None or err < best_err:
            best, best_err = q, err
    return best, best_err == 0


@dataclass(frozen=True)
class Header:
    """What a JPEG file's header says: its tables (natural order), their IJG quality, the
    chroma subsampling ("4:2:0", "4:4:4", ... or "" when unknown or grayscale)."""

    luma: np.ndarray
    chroma: np.ndarray | None
    qf: int
    exact: bool
    subsampling: str


def read_header(data: bytes) -> Header | None:
    """The quantization tables of JPEG bytes, or None for anything else."""
    if data[:2] != b"\xff\xd8":
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            tables = getattr(im, "quantization", None) or {}
            sampling = JpegImagePlugin.get_sampling(im) if im.mode in ("RGB", "YCbCr") else -1
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    if 0 not in tables:
        return None
    luma = np.array(tables[0], np.int64)  # Pillow gives natural (row-major) order
    chroma = np.array(tables[1], np.int64) if 1 in tables else None
    qf, exact = qf_from_tables(luma, chroma)
    return Header(luma, chroma, qf, exact, SUBSAMPLING.get(sampling, ""))


def jpeg_quality(data: bytes) -> tuple[int | None, bool]:
    """QF of JPEG bytes from their quantization tables: (qf, exact), or (None, False)."""
    h = read_header(data)
    return (None, False) if h is None else (h.qf, h.exact)


_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_FROM_YCC = np.linalg.inv(_TO_YCC)  # exact inverse: a round trip changes nothing
_YCC_OFFSET = np.array([0.0, 128.0, 128.0])


# The same affine maps as 3x4 matrices for cv2.transform: float64 like numpy's matmul, but
# vectorized over pixels and threaded (a 12 MP photo: 0.03 s instead of 1.3 s).
_TO_YCC_AFFINE = np.hstack([_TO_YCC, _YCC_OFFSET[:, None]])
_FROM_YCC_AFFINE = np.hstack([_FROM_YCC, -(_FROM_YCC @ _YCC_OFFSET)[:, None]])


def to_ycc(rgb: np.ndarray) -> np.ndarray:
    """RGB (0..255, any dtype) -> float64 full-range YCbCr (JFIF), shape (H, W, 3)."""
    return cv2.transform(np.ascontiguousarray(rgb, np.float64), _TO_YCC_AFFINE)


def from_ycc(ycc: np.ndarray) -> np.ndarray:
    """Inverse of ``to_ycc`` (float64, not clipped)."""
    return cv2.transform(np.ascontiguousarray(ycc, np.float64), _FROM_YCC_AFFINE)


def luma(rgb: np.ndarray, rows: int = 256) -> np.ndarray:
    """The Y plane of ``to_ycc`` (float64, the same bits), converted ``rows`` at a time so a
    12 MP photo never holds its full float64 YCbCr (288 MB)."""
    y = np.empty(rgb.shape[:2], np.float64)
    for r in range(0, rgb.shape[0], rows):
        y[r : r + rows] = cv2.transform(np.asarray(rgb[r : r + rows], np.float64), _TO_YCC_AFFINE[:1])
    return y


def _blocks(plane: np.ndarray, offset: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Whole 8x8 blocks of a 2-D plane on the grid at ``offset``: (nby, nbx, 8, 8) and the span."""
    dy, dx = offset
    nby, nbx = (plane.shape[0] - dy) // 8, (plane.shape[1] - dx) // 8
    region = plane[dy : dy + 8 * nby, dx : dx + 8 * nbx]
    return region.reshape(nby, 8, nbx, 8).transpose(0, 2, 1, 3), (dy, dy + 8 * nby, dx, dx + 8 * nbx)


def block_dct(plane: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """DCT coefficients (nby, nbx, 8, 8) of the whole blocks of ``plane`` (level-shifted by 128)."""
    blocks, _ = _blocks(plane - 128.0, offset)
    return _DCT8 @ blocks @ _DCT8.T


def lattice_scores(y: np.ndarray, offset: tuple[int, int], max_blocks: int = 1024, tol: float = 0.75) -> np.ndarray:
    """How well the luma blocks at ``offset`` sit on each IJG quality's lattice: 100 scores.

    Decoding leaves each block's DCT coefficients on multiples of the quantization step,
    blurred only by rounding (about 0.3). Per frequency with a step of 3 or more, the score is
    the share of clearly non-zero coefficients within ``tol`` of a multiple, corrected for the
    share that lands there by chance (2 tol / step); averaged over frequencies (weighted by count).
    """
    blocks, _ = _blocks(y, offset)
    nby, nbx = blocks.shape[:2]
    if nby * nbx > max_blocks:  # a spread sample, taken before the DCT: a 12 MP photo has 187,500 blocks
        iy, ix = np.divmod(np.linspace(0, nby * nbx - 1, max_blocks).astype(int), nbx)
        blocks = blocks[iy, ix]
    coef = (_DCT8 @ (blocks - 128.0) @ _DCT8.T).reshape(-1, 64)
    if len(coef) < LATTICE_MIN_BLOCKS:
        return np.full(100, -1.0)
    nonzero = np.abs(coef) > 1.0  # (n, 64)
    counts = nonzero.sum(axis=0)  # (64,)
    fit = np.zeros((100, 64))
    for k in np.flatnonzero(counts):  # per frequency, its non-zero coefficients against each distinct step
        c = coef[nonzero[:, k], k][None]
        steps = _STEPS[k][:, None]
        hit = np.abs(c - steps * np.round(c / steps)) < tol
        fit[:, k] = hit.sum(axis=1)[_STEP_INDEX[k]] / counts[k]
    chance = 2 * tol / _LUMA_BY_QF
    score = (fit - chance) / (1 - chance)
    weight = np.where((_LUMA_BY_QF >= 3) & (counts >= 8)[None], counts[None].astype(np.float64), 0.0)
    total = weight.sum(axis=1)
    return np.where(total > 0, (score * weight).sum(axis=1) / np.maximum(total, 1e-9), -1.0)


def qf_from_pixels(rgb: np.ndarray, offset: tuple[int, int] = (0, 0)) -> tuple[int | None, float]:
    """The IJG quality whose lattice the luma blocks at ``offset`` fit best, and its score
    (about 0.1 to 0.9 for a single JPEG on that grid, about 0 for anything else)."""
    scores = lattice_scores(luma(rgb), offset)
    best = int(np.argmax(scores))
    return (best + 1, float(scores[best])) if scores[best] > -1 else (None, 0.0)


def _phase_means(y: np.ndarray, axis: int) -> np.ndarray | None:
    """Mean absolute luma step across the block boundaries of each grid phase 0..7 along ``axis``
    (phase p: boundaries just before pixels p, p + 8, ...); None when the image is too small."""
    # d[k]: between pixels k and k + 1; float32 and OpenCV (threaded): 0.01 s on a 12 MP photo
    y32 = np.asarray(y, np.float32)
    steps = cv2.absdiff(y32[1:], y32[:-1]) if axis == 0 else cv2.absdiff(y32[:, 1:], y32[:, :-1])
    d = cv2.reduce(steps, 1 - axis, cv2.REDUCE_AVG, dtype=cv2.CV_64F).ravel()
    n = len(d) // 8 * 8
    if n < 16:
        return None
    return np.array([d[(p - 1) % 8 : n : 8].mean() for p in range(8)])


def blockiness(y: np.ndarray) -> tuple[tuple[int, int], tuple[float, float]]:
    """The 8x8 grid phase of the blocking in a luma plane, per axis, and its strength: the mean
    step at the strongest phase over the mean at the others, minus 1 (about 0 for a photo that
    was never compressed, up to 1 or more for a heavily compressed one)."""
    return _blockiness((_phase_means(y, 0), _phase_means(y, 1)))


def uniqueness(means: tuple[np.ndarray | None, np.ndarray | None]) -> float:
    """How much the strongest blocking phase stands out from the runner-up, on the weaker axis:
    mean step at the best phase over the second best, minus 1. JPEG blocks sit at one phase in 8
    (0.08 and more after a gamma edit, training photos at QF <= 50); a photo upscaled by 2 has
    steps at every other phase: as "blocky" as a JPEG but about 0 here (at most 0.02)."""
    out = []
    for m in means:
        if m is None:
            return 0.0
        top = np.sort(m)[::-1]
        out.append(float(top[0] / max(top[1], 1e-6) - 1.0))
    return min(out)


def _blockiness(means: tuple[np.ndarray | None, np.ndarray | None]) -> tuple[tuple[int, int], tuple[float, float]]:
    phases, strengths = [], []
    for m in means:
        if m is None:
            phases.append(0)
            strengths.append(0.0)
            continue
        best = int(np.argmax(m))
        rest = np.delete(m, best).mean()
        phases.append(best)
        strengths.append(float(m[best] / max(rest, 1e-6) - 1.0))
    return (phases[0], phases[1]), (strengths[0], strengths[1])


@dataclass(frozen=True)
class GridEvidence:
    """The strongest JPEG compression visible in the pixels.

    offset: grid offset (dy, dx) of the blocking (or of the lattice when one was found);
    blocking: the weaker axis' blockiness strength; lattice_qf/lattice_score: the IJG quality
    whose lattice fits at ``offset`` (None when no lattice scores >= LATTICE_MIN_SCORE).
    """

    offset: tuple[int, int]
    blocking: float
    lattice_qf: int | None
    lattice_score: float
    lattices: tuple[tuple[tuple[int, int], int, float], ...] = ()  # every (offset, qf, score) found
    phase: tuple[int, int] = (0, 0)  # ``blockiness``, computed once per image
    strengths: tuple[float, float] = (0.0, 0.0)
    unique: float = 0.0  # ``uniqueness`` of the blocking phase


def find_grid(rgb: np.ndarray, candidates: int = 3) -> GridEvidence:
    """Search the 8x8 grid offsets for JPEG traces: (0, 0), and the ``candidates`` strongest
    blocking phases per axis. Of the offsets whose lattice fits, the lowest quality (the
    strongest compression) wins; without any, the blocking's own phase."""
    y = luma(rgb)
    means = (_phase_means(y, 0), _phase_means(y, 1))  # the whole image's steps, measured once
    (py, px), (sy, sx) = _blockiness(means)
    unique = uniqueness(means)
    rows, cols = _phase_order(means[0])[:candidates], _phase_order(means[1])[:candidates]
    offsets = list(dict.fromkeys([(0, 0)] + [(a, b) for a in rows for b in cols]))
    found = []
    for off in offsets:
        scores = lattice_scores(y, off, max_blocks=512)
        best = int(np.argmax(scores))
        if scores[best] >= LATTICE_MIN_SCORE:
            found.append((off, best + 1, float(scores[best])))
    blocking = min(sy, sx)
    if found:
        off, qf, _ = min(found, key=lambda f: (f[1], -f[2]))
        scores = lattice_scores(y, off)  # the winner again on more blocks: the exact QF of an aligned JPEG
        best = int(np.argmax(scores))
        return GridEvidence(off, blocking, best + 1, float(scores[best]), tuple(found), (py, px), (sy, sx), unique)
    return GridEvidence((py, px), blocking, None, 0.0, (), (py, px), (sy, sx), unique)


def _phase_order(m: np.ndarray | None) -> list[int]:
    return [0] if m is None else [int(p) for p in np.argsort(m)[::-1]]


def _project_plane(
    pred: np.ndarray, obs: np.ndarray, table: np.ndarray, offset: tuple[int, int], margin: float
) -> np.ndarray:
    """Clip ``pred``'s block DCT coefficients into the quantization cells of ``obs``'s."""
    q = np.asarray(table, np.float64).reshape(8, 8)
    cp, co = block_dct(pred, offset), block_dct(obs, offset)
    if cp.size == 0:
        return pred
    center = q * np.round(co / q)
    clipped = np.clip(cp, center - q / 2 - margin, center + q / 2 + margin)
    out = pred.copy()
    _, (y0, y1, x0, x1) = _blocks(pred, offset)
    delta = _DCT8.T @ (clipped - cp) @ _DCT8  # back to pixels: only the change
    out[y0:y1, x0:x1] += delta.transpose(0, 2, 1, 3).reshape(y1 - y0, x1 - x0)
    return out


def project(
    pred: np.ndarray,
    observed: np.ndarray,
    luma_table: np.ndarray,
    chroma_table: np.ndarray | None,
    offset: tuple[int, int] = (0, 0),
    subsampling: str = "",
    margin: float = 0.5,
    rows: int = 32,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Quantization-constraint projection of a restored image onto what the JPEG allows.

    pred: float RGB (H, W, 3) in [0, 255], the network's output; observed: the decoded JPEG
    (RGB uint8) it was restored from. Each whole 8x8 block's DCT coefficients of the output's
    luma are clipped into the quantization cell (step q, widened by ``margin`` for the
    decoder's rounding) around the observed coefficient; chroma too when its table and
    subsampling are known ("4:4:4" on the same grid; "4:2:0" at half resolution, the change
    upsampled back). The true image lies in those cells, so each clipped coefficient moves
    towards it. Returns float RGB, not clipped to [0, 255]. ``rows``: block rows per strip;
    ``out``: where to write it (may be ``pred`` itself: each strip is read before it is written).
    """
    chroma_420 = chroma_table is not None and subsampling == "4:2:0" and offset[0] % 2 == 0 and offset[1] % 2 == 0
    if chroma_420:
        whole = _project_whole(pred, observed, luma_table, chroma_table, offset, margin)
        if out is None:
            return whole
        out[...] = whole
        return out
    # Luma (and 4:4:4 chroma) blocks are independent: strips of whole block rows give the same
    # bits as the whole image at once, with a strip's float64 YCbCr in memory instead of three.
    out = np.empty(pred.shape, np.float64) if out is None else out
    tables = [luma_table] + ([chroma_table] * 2 if chroma_table is not None and subsampling == "4:4:4" else [])
    edges = sorted({0, *range(offset[0], pred.shape[0], 8 * rows), pred.shape[0]})
    for r0, r1 in zip(edges, edges[1:]):
        yp, yo = to_ycc(pred[r0:r1]), to_ycc(observed[r0:r1])
        for c, table in enumerate(tables):
            yp[..., c] = _project_plane(yp[..., c], yo[..., c], table, (0 if r0 else offset[0], offset[1]), margin)
        out[r0:r1] = from_ycc(yp)
    return out


def _project_whole(
    pred: np.ndarray,
    observed: np.ndarray,
    luma_table: np.ndarray,
    chroma_table: np.ndarray,
    offset: tuple[int, int],
    margin: float,
) -> np.ndarray:
    """``project`` with 4:2:0 chroma, on the whole image at once."""
    yp, yo = to_ycc(pred), to_ycc(observed)
    out = yp.copy()
    out[..., 0] = _project_plane(yp[..., 0], yo[..., 0], luma_table, offset, margin)
    h, w = (yp.shape[0] // 2) * 2, (yp.shape[1] // 2) * 2
    half = (offset[0] // 2, offset[1] // 2)
    for c in (1, 2):
        p2 = yp[:h, :w, c].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        o2 = yo[:h, :w, c].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        change = _project_plane(p2, o2, chroma_table, half, margin) - p2
        out[:h, :w, c] += np.repeat(np.repeat(change, 2, axis=0), 2, axis=1)
    return from_ycc(out)
