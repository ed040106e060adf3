"""SMPL-X parameter sequences -> meshes -> pixel-space vertices for the renderer.

The Make-Your-Anchor+ structure condition is a rendered SMPL-X mesh (``002_*.txt``,
Sec. III-B). This module reads per-frame SMPL-X parameters (the SHOW / TalkSHOW layouts
and plain ``.npz``), meshes them with the ``smplx`` package from a SMPL-X model file the
user supplies (it is licensed; anchorgen never ships or downloads it), and projects the
vertices into a square image whose pixel coordinates the renderer draws
(``anchorgen.prepare.render.render_mesh_frame``).

Coordinates: the camera frame is OpenCV's (x right, y down, z forward, so larger z is
farther), as in SHOW and TalkSHOW, whose ``global_orient`` (about pi around x) turns the
y-up SMPL-X body into it.

Pickles: ``.pkl`` parameter files (SHOW's release format) are read with a restricted
unpickler that can only rebuild numpy arrays, numpy scalars and plain containers; any
other global (a function, a class, a torch tensor) is refused before anything runs, so a
crafted file cannot execute code. The SMPL-X model file itself is read with
``allow_pickle=False`` and only its numeric arrays are handed to ``smplx``, whose own
loader would otherwise unpickle every entry of the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import pickle
import tempfile
import warnings
from pathlib import Path

import numpy as np

from anchorgen.errors import InputError

SMPLX_NUM_VERTICES = 10475
BODY_JOINTS = 21
HAND_POSE_DIM = 45  # 15 joints x axis-angle
PELVIS, HEAD = 0, 15
DEFAULT_FPS = 30.0  # SHOW and TalkSHOW sequences are 30 fps

MODEL_KEYS = (
    "v_template",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "kintree_table",
    "f",
    "hands_componentsl",
    "hands_componentsr",
    "hands_meanl",
    "hands_meanr",
    "lmk_faces_idx",
    "lmk_bary_coords",
)
OPTIONAL_MODEL_KEYS = ("dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords")

PARAM_ALIASES: dict[str, tuple[str, ...]] = {
    "betas": ("betas", "shape", "beta"),
    "global_orient": ("global_orient", "root_orient"),
    "body_pose": ("body_pose", "body_pose_axis", "pose_body"),
    "jaw_pose": ("jaw_pose", "pose_jaw"),
    "leye_pose": ("leye_pose", "pose_eye_left"),
    "reye_pose": ("reye_pose", "pose_eye_right"),
    "left_hand_pose": ("left_hand_pose", "lhand_pose", "pose_hand_left"),
    "right_hand_pose": ("right_hand_pose", "rhand_pose", "pose_hand_right"),
    "expression": ("expression", "expr", "exp"),
    "transl": ("transl", "trans", "translation"),
}
"""Canonical name -> accepted key names (SHOW pkl, TalkSHOW, AMASS-like npz)."""

# Packed pose vectors: name -> (start, stop) columns.
AMASS_POSES = {  # "poses" (T, 165) in AMASS SMPL-X npz files
    "global_orient": (0, 3),
    "body_pose": (3, 66),
    "jaw_pose": (66, 69),
    "leye_pose": (69, 72),
    "reye_pose": (72, 75),
    "left_hand_pose": (75, 120),
    "right_hand_pose": (120, 165),
}
TALKSHOW_POSES = {  # TalkSHOW demo output .npy (T, 265)
    "jaw_pose": (0, 3),
    "leye_pose": (3, 6),
    "reye_pose": (6, 9),
    "global_orient": (9, 12),
    "body_pose": (12, 75),
    "left_hand_pose": (75, 120),
    "right_hand_pose": (120, 165),
    "expression": (165, 265),
}


@dataclasses.dataclass
class Camera:
    """A camera that maps camera-frame points (metres, OpenCV axes) to image pixels."""

    kind: str
    """"perspective" or "orthographic"."""
    translation: np.ndarray
    """(3,), (1, 3) or (T, 3) metres added to the vertices before projecting (SHOW's
    ``camera_transl``; the weak-perspective ``cam``'s tx, ty with z = 0)."""
    focal: float = 0.0
    """Perspective: focal length in pixels of the camera's own image."""
    principal: tuple[float, float] = (0.0, 0.0)
    """Perspective: principal point (cx, cy) in pixels of the camera's own image."""
    image_size: tuple[int, int] = (0, 0)
    """Perspective: (width, height) of the camera's own image; fitted into the square."""
    scale: np.ndarray | float = 1.0
    """Orthographic: scalar or (T,) scale from metres to normalised [-1, 1] image units."""

    def __post_init__(self) -> None:
        if self.kind not in ("perspective", "orthographic"):
            raise InputError(f"unknown camera kind {self.kind!r} (perspective or orthographic)")
        if self.kind == "perspective" and (self.focal <= 0 or min(self.image_size) <= 0):
            raise InputError("a perspective camera needs a positive focal length and image size")


@dataclasses.dataclass
class SMPLXParams:
    """Per-frame SMPL-X parameters of one sequence (T frames), axis-angle rotations."""

    betas: np.ndarray
    """(B,) shape coefficients, constant over the sequence."""
    global_orient: np.ndarray
    """(T, 3)"""
    body_pose: np.ndarray
    """(T, 63) 21 body joints."""
    jaw_pose: np.ndarray
    """(T, 3)"""
    leye_pose: np.ndarray
    """(T, 3)"""
    reye_pose: np.ndarray
    """(T, 3)"""
    left_hand_pose: np.ndarray
    """(T, 45) axis-angle, or (T, K<45) PCA coefficients (SHOW uses 12)."""
    right_hand_pose: np.ndarray
    """(T, 45) or (T, K<45), like ``left_hand_pose``."""
    expression: np.ndarray
    """(T, E) expression coefficients."""
    transl: np.ndarray
    """(T, 3) body translation in metres."""
    fps: float
    """Frames per second."""
    camera: Camera | None = None
    """The sequence's own camera, when the file has one."""

    def __len__(self) -> int:
        return int(self.global_orient.shape[0])


@dataclasses.dataclass
class MeshSequence:
    """Mesh vertices in image pixels (z: depth, larger is farther), ready to render."""

    vertices: np.ndarray
    """(T, V, 3) float32 pixels in a square image."""
    faces: np.ndarray
    """(F, 3) int64 vertex indices."""
    fps: float
    """Frames per second."""

    def __len__(self) -> int:
        return int(self.vertices.shape[0])

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` atomically."""
        from anchorgen.io.atomic import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                vertices=self.vertices.astype(np.float32),
                faces=self.faces.astype(np.int64),
                fps=np.float64(self.fps),
            )

    @classmethod
    def load(cls, path: str | Path) -> MeshSequence:
        try:
            with np.load(path, allow_pickle=False) as data:
                seq = cls(vertices=data["vertices"], faces=data["faces"], fps=float(data["fps"]))
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"cannot read a mesh sequence from {path}: {exc}") from exc
        if seq.vertices.ndim != 3 or seq.vertices.shape[2] != 3 or seq.faces.shape[1:] != (3,):
            raise InputError(f"{path}: vertices must be (T, V, 3) and faces (F, 3)")
        return seq


# ---------------------------------------------------------------------------------------
# Parameter files


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numpy scalars and plain containers, nothing else."""

    def find_class(self, module: str, name: str):
        allowed = _allowed_pickle_globals()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' from a pickle")


def _allowed_pickle_globals() -> dict[tuple[str, str], object]:
    import codecs
    import collections

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(prefix, "_reconstruct")] = multiarray._reconstruct
        allowed[(prefix, "scalar")] = multiarray.scalar
    return allowed


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = _ArraysOnlyUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise InputError(
            f"{path}: {exc}. anchorgen only reads pickles of plain numpy arrays; convert the "
            "file to .npz (np.savez(out, **params)) in the environment that wrote it"
        ) from exc
    except (OSError, EOFError, ValueError, TypeError) as exc:
        raise InputError(f"cannot read SMPL-X parameters from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a dict of arrays, found {type(data).__name__}")
    return data


def load_smplx_params(path: str | Path, fps: float | None = None) -> SMPLXParams:
    """Read per-frame SMPL-X parameters from ``.npz``, ``.npy`` or ``.pkl``.

    Layouts: SHOW/TalkSHOW ``.pkl`` (``body_pose_axis`` (T,21,3), PCA hands, ``betas``
    (300,), ``expression`` (T,100), ``camera_transl``, ``focal_length``, ``center``,
    ``width``, ``height``), TalkSHOW's demo output ``.npy`` (T, 265), AMASS-like ``.npz``
    with ``poses`` (T, 165), or an ``.npz`` with the smplx argument names. Missing parts
    are zero. ``fps`` overrides the file's (default 30).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"SMPL-X parameter file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        raw = _read_pickle(path)
    elif suffix in (".npz", ".npy"):
        try:
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                raw = _unpack(loaded, TALKSHOW_POSES, 265, path)
            else:
                with loaded:
                    raw = {key: loaded[key] for key in loaded.files}
        except ValueError as exc:
            raise InputError(
                f"{path}: {exc} (object arrays are refused: they are pickles)"
            ) from exc
        except OSError as exc:
            raise InputError(f"cannot read SMPL-X parameters from {path}: {exc}") from exc
    else:
        raise InputError(f"{path}: SMPL-X parameters must be .npz, .npy or .pkl")
    return _params_from_dict(raw, path, fps)


def _unpack(poses: np.ndarray, layout: dict[str, tuple[int, int]], width: int, path: Path) -> dict:
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 2 or poses.shape[1] != width:
        raise InputError(f"{path}: expected a (T, {width}) pose array, found {poses.shape}")
    return {name: poses[:, a:b] for name, (a, b) in layout.items()}


def _params_from_dict(raw: dict, path: Path, fps: float | None) -> SMPLXParams:
    if "poses" in raw and "body_pose" not in raw:
        raw = {**_unpack(raw["poses"], AMASS_POSES, 165, path), **raw}
    values: dict[str, np.ndarray] = {}
    for name, aliases in PARAM_ALIASES.items():
        for key in aliases:
            if key in raw:
                values[name] = _float_array(raw[key], key, path)
                break
    per_frame = [v for k, v in values.items() if k != "betas" and v.ndim >= 2]
    if not per_frame:
        raise InputError(
            f"{path}: no per-frame SMPL-X parameters found (looked for "
            f"{', '.join(a[0] for a in PARAM_ALIASES.values())}, poses); keys: {', '.join(sorted(raw))}"
        )
    num_frames = per_frame[0].shape[0]
    if num_frames == 0:
        raise InputError(f"{path}: the SMPL-X sequence has no frames")

    def frames(name: str, width: int | None) -> np.ndarray:
        value = values.get(name)
        if value is None:
            return np.zeros((num_frames, width or 0))
        value = value.reshape(value.shape[0], -1) if value.ndim >= 2 else value[None]
        if value.shape[0] == 1:
            value = np.repeat(value, num_frames, axis=0)
        if value.shape[0] != num_frames or (width is not None and value.shape[1] != width):
            expected = f"({num_frames}, {width if width is not None else 'K'})"
            raise InputError(f"{path}: {name} has shape {value.shape}, expected {expected}")
        return value

    hands = {side: frames(side, None) for side in ("left_hand_pose", "right_hand_pose")}
    for side, value in hands.items():
        if value.shape[1] == 0:
            hands[side] = np.zeros((num_frames, HAND_POSE_DIM))
        elif value.shape[1] > HAND_POSE_DIM:
            raise InputError(
                f"{path}: {side} has {value.shape[1]} values (45 axis-angle or <45 PCA)"
            )
    betas = values.get("betas", np.zeros(10))
    betas = betas.reshape(-1, betas.shape[-1])[0] if betas.ndim >= 2 else betas.reshape(-1)
    fps_key = next((k for k in ("fps", "mocap_frame_rate", "mocap_framerate") if k in raw), None)
    file_fps = _scalar(raw, fps_key, path) if fps_key else None
    return SMPLXParams(
        betas=betas,
        global_orient=frames("global_orient", 3),
        body_pose=frames("body_pose", BODY_JOINTS * 3),
        jaw_pose=frames("jaw_pose", 3),
        leye_pose=frames("leye_pose", 3),
        reye_pose=frames("reye_pose", 3),
        left_hand_pose=hands["left_hand_pose"],
        right_hand_pose=hands["right_hand_pose"],
        expression=frames("expression", None),
        transl=frames("transl", 3),
        fps=float(fps or file_fps or DEFAULT_FPS),
        camera=_camera_from_dict(raw, path),
    )


def _camera_from_dict(raw: dict, path: Path) -> Camera | None:
    """SHOW's perspective camera, or a weak-perspective ``cam`` = (s, tx, ty) per frame."""
    focal_key = next((k for k in ("focal_length", "focal") if k in raw), None)
    if focal_key is not None:
        trans_key = next(
            (k for k in ("camera_transl", "cam_trans", "camera_translation") if k in raw), None
        )
        translation = _float_array(raw[trans_key], trans_key, path) if trans_key else np.zeros(3)
        centre = (
            _float_array(raw["center"], "center", path).reshape(-1)[:2] if "center" in raw else None
        )
        if "width" in raw and "height" in raw:
            size = (round(_scalar(raw, "width", path)), round(_scalar(raw, "height", path)))
        elif centre is not None:
            size = (round(2 * centre[0]), round(2 * centre[1]))
        else:
            raise InputError(f"{path}: '{focal_key}' given without 'width'/'height' or 'center'")
        principal = centre if centre is not None else np.array(size, np.float64) / 2
        return Camera(
            "perspective",
            translation=translation.reshape(-1, 3),
            focal=_scalar(raw, focal_key, path),
            principal=(float(principal[0]), float(principal[1])),
            image_size=size,
        )
    if "cam" in raw:
        cam = _float_array(raw["cam"], "cam", path).reshape(-1, 3)  # (1|T, 3): s, tx, ty
        translation = np.concatenate([cam[:, 1:], np.zeros((len(cam), 1))], axis=1)
        return Camera("orthographic", translation=translation, scale=cam[:, 0])
    return None


def _scalar(raw: dict, key: str, path: Path) -> float:
    return float(_float_array(raw[key], key, path).reshape(-1)[0])


def _float_array(value, key: str, path: Path) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{path}: '{key}' is not numeric ({array.dtype})")
    return array.astype(np.float64)


# ---------------------------------------------------------------------------------------
# Meshing


def _model_arrays(model_path: Path) -> dict[str, np.ndarray]:
    """The numeric arrays smplx reads, loaded without unpickling anything."""
    if model_path.suffix.lower() != ".npz":
        raise InputError(
            f"{model_path}: give the SMPL-X model as .npz (e.g. SMPLX_NEUTRAL.npz from the "
            "SMPL-X download); .pkl model files are pickles and are not loaded"
        )
    if not model_path.is_file():
        raise InputError(f"SMPL-X model file not found: {model_path}")
    arrays = {}
    try:
        with np.load(model_path, allow_pickle=False) as data:
            missing = [k for k in MODEL_KEYS if k not in data.files]
            if missing:
                raise InputError(
                    f"{model_path}: not an SMPL-X model file, missing {', '.join(missing)}"
                )
            for key in MODEL_KEYS + OPTIONAL_MODEL_KEYS:
                if key not in data.files:
                    continue
                try:
                    arrays[key] = data[key]
                except ValueError as exc:
                    raise InputError(
                        f"{model_path}: '{key}' is not a plain array ({exc}); it would have to be "
                        "unpickled, which anchorgen does not do"
                    ) from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the SMPL-X model {model_path}: {exc}") from exc
    if arrays["v_template"].shape != (SMPLX_NUM_VERTICES, 3):
        raise InputError(
            f"{model_path}: v_template has shape {arrays['v_template'].shape}, "
            f"SMPL-X has ({SMPLX_NUM_VERTICES}, 3)"
        )
    return arrays


def load_smplx_model(
    model_path: str | Path,
    num_betas: int = 10,
    num_expression_coeffs: int = 10,
    flat_hand_mean: bool = False,
):
    """An ``smplx.SMPLX`` (full axis-angle hands) built from a user-supplied model file.

    Only the numeric arrays smplx needs are copied into a pickle-free temporary ``.npz``
    for smplx to read. Returns ``(model, hand_components)`` where ``hand_components`` maps
    "left"/"right" to the (45, 45) PCA basis used to expand PCA hand poses. Models are
    cached per file version and settings (loading one takes seconds).
    """
    path = Path(model_path).resolve()
    stat = path.stat() if path.is_file() else None
    version = (stat.st_mtime_ns, stat.st_size) if stat else None
    return _load_smplx_model(path, version, num_betas, num_expression_coeffs, flat_hand_mean)


@functools.lru_cache(maxsize=2)
def _load_smplx_model(
    path: Path,
    version: tuple[int, int] | None,
    num_betas: int,
    num_expression_coeffs: int,
    flat_hand_mean: bool,
):
    import smplx

    arrays = _model_arrays(path)
    with tempfile.TemporaryDirectory(prefix="anchorgen-smplx-") as tmp:
        clean = Path(tmp) / "SMPLX_NEUTRAL.npz"
        np.savez(clean, **arrays)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):  # smplx prints its warnings
            model = smplx.SMPLX(
                model_path=str(clean),
                ext="npz",
                use_pca=False,
                flat_hand_mean=flat_hand_mean,
                num_betas=num_betas,
                num_expression_coeffs=num_expression_coeffs,
                use_face_contour=False,
            )
    for line in stdout.getvalue().splitlines():
        warnings.warn(f"smplx: {line.strip()}", stacklevel=3)
    components = {"left": arrays["hands_componentsl"], "right": arrays["hands_componentsr"]}
    return model.eval(), components


def expand_hand_pose(pose: np.ndarray, components: np.ndarray) -> np.ndarray:
    """(T, K) PCA hand coefficients -> (T, 45) axis-angle (as smplx's ``use_pca`` does)."""
    if pose.shape[1] == HAND_POSE_DIM:
        return pose
    return pose @ components[: pose.shape[1]]


def smplx_vertices(
    params: SMPLXParams, model_path: str | Path, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mesh every frame: returns vertices (T, 10475, 3), joints (T, J, 3), faces (F, 3)."""
    import torch
    from tqdm import tqdm

    model, components = load_smplx_model(
        model_path,
        num_betas=max(len(params.betas), 1),
        num_expression_coeffs=max(params.expression.shape[1], 1),
    )
    betas = _fit_width(params.betas[None], model.num_betas)  # (1, B)
    expression = _fit_width(params.expression, model.num_expression_coeffs)  # (T, E)
    left = expand_hand_pose(params.left_hand_pose, components["left"])
    right = expand_hand_pose(params.right_hand_pose, components["right"])
    vertices, joints = [], []
    with torch.no_grad():
        for start in tqdm(
            range(0, len(params), batch_size), desc="SMPL-X meshes", unit="batch", leave=False
        ):
            part = slice(start, start + batch_size)
            n = len(params.global_orient[part])

            def t(array: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)

            out = model(
                betas=t(np.repeat(betas, n, axis=0)),
                global_orient=t(params.global_orient[part]),
                body_pose=t(params.body_pose[part]),
                jaw_pose=t(params.jaw_pose[part]),
                leye_pose=t(params.leye_pose[part]),
                reye_pose=t(params.reye_pose[part]),
                left_hand_pose=t(left[part]),
                right_hand_pose=t(right[part]),
                expression=t(expression[part]),
                transl=t(params.transl[part]),
            )
            vertices.append(out.vertices.numpy())
            joints.append(out.joints.numpy())
    return np.concatenate(vertices), np.concatenate(joints), np.asarray(model.faces, np.int64)


def _fit_width(array: np.ndarray, width: int) -> np.ndarray:
    """Truncate or zero-pad the last axis to ``width`` (model and file may differ)."""
    if array.shape[1] >= width:
        return array[:, :width]
    return np.pad(array, ((0, 0), (0, width - array.shape[1])))


# ---------------------------------------------------------------------------------------
# Projection


def fit_orthographic_camera(vertices: np.ndarray, margin: float = 0.08) -> Camera:
    """One orthographic camera that frames every vertex of the sequence (T, V, 3).

    A single camera for the whole sequence, so that the view does not move.
    """
    points = vertices.reshape(-1, 3)
    low, high = np.nanmin(points, axis=0), np.nanmax(points, axis=0)
    extent = float(max(high[0] - low[0], high[1] - low[1], 1e-6))
    centre = 0.5 * (low + high)
    translation = np.array([-centre[0], -centre[1], 0.0])
    return Camera("orthographic", translation=translation, scale=2.0 * (1.0 - margin) / extent)


def project_to_image(vertices: np.ndarray, camera: Camera, size: int) -> np.ndarray:
    """Camera-frame points (T, V, 3) -> (T, V, 3): x, y pixels in a ``size`` square, z depth.

    Depth is in the same pixel units as x and y near the mesh (larger = farther), so that
    surface normals computed from the output are undistorted.
    Perspective: u = f X / Z + cx in the camera's image, which is then scaled to fit the
    square and centre-padded, as condition images are.
    Orthographic: (x + tx) * s in [-1, 1] maps to [0, size].
    """
    vertices = np.asarray(vertices, np.float64)
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise InputError(f"vertices must be (T, V, 3), got {vertices.shape}")
    translation = np.asarray(camera.translation, np.float64).reshape(-1, 1, 3)  # (1|T, 1, 3)
    scale = np.asarray(camera.scale, np.float64).reshape(-1, 1)  # (1|T, 1)
    if {len(translation), len(scale)} - {1, len(vertices)}:
        raise InputError(f"the camera has {len(translation)} frames, the mesh {len(vertices)}")
    points = vertices + translation
    out = np.empty_like(points)
    if camera.kind == "orthographic":
        half = size / 2.0
        out[..., 0] = (points[..., 0] * scale + 1.0) * half
        out[..., 1] = (points[..., 1] * scale + 1.0) * half
        out[..., 2] = points[..., 2] * scale * half
        return out.astype(np.float32)
    depth = points[..., 2]
    if not (depth > 1e-6).all():
        raise InputError("part of the mesh is at or behind the camera: check camera_transl")
    width, height = camera.image_size
    fit = size / max(width, height)
    pad_x, pad_y = (size - width * fit) / 2.0, (size - height * fit) / 2.0
    cx, cy = camera.principal
    out[..., 0] = (camera.focal * points[..., 0] / depth + cx) * fit + pad_x
    out[..., 1] = (camera.focal * points[..., 1] / depth + cy) * fit + pad_y
    # Pixels per metre at the mesh's typical depth converts depth to pixel units.
    out[..., 2] = depth * camera.focal * fit / float(np.median(depth))
    return out.astype(np.float32)


def smplx_to_mesh_sequence(
    params_path: str | Path,
    model_path: str | Path,
    size: int,
    fps: float | None = None,
    camera: Camera | None = None,
) -> MeshSequence:
    """Parameter file + model file -> pixel-space ``MeshSequence`` for the renderer.

    The camera is, in order: ``camera``, the file's own camera, or one orthographic
    camera fitted to the whole sequence. Without a camera, a body meshed y-up (SMPL-X's
    canonical frame, ``global_orient`` near zero) is turned to the camera's y-down frame.
    """
    if size <= 0:
        raise InputError(f"image size must be positive, got {size}")
    params = load_smplx_params(params_path, fps=fps)
    vertices, joints, faces = smplx_vertices(params, model_path)
    camera = camera or params.camera
    if camera is None:
        head_up = np.mean(joints[:, HEAD, 1] - joints[:, PELVIS, 1]) > 0
        if head_up:  # y-up body: rotate by pi about x into the y-down camera frame
            vertices = vertices * np.array([1.0, -1.0, -1.0], np.float32)
        camera = fit_orthographic_camera(vertices)
    return MeshSequence(
        vertices=project_to_image(vertices, camera, size), faces=faces, fps=params.fps
    )
