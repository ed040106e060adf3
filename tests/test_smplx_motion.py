"""SMPL-X parameters -> meshes -> pixel vertices, with a synthetic model file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from anchorgen.errors import InputError
from anchorgen.motion.smplx_motion import (
    Camera,
    MeshSequence,
    expand_hand_pose,
    fit_orthographic_camera,
    load_smplx_model,
    load_smplx_params,
    project_to_image,
    smplx_to_mesh_sequence,
    smplx_vertices,
)
from fixtures.synthetic_smplx import (
    HEAD,
    JAW,
    LEFT_ELBOW,
    NUM_VERTICES,
    joint_positions,
    write_synthetic_smplx_model,
)

pytestmark = pytest.mark.filterwarnings("ignore:smplx. WARNING")
T = 3


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return write_synthetic_smplx_model(tmp_path_factory.mktemp("smplx") / "SMPLX_NEUTRAL.npz")


def _params(**overrides) -> dict[str, np.ndarray]:
    params = {
        "betas": np.zeros(10),
        "global_orient": np.zeros((T, 3)),
        "body_pose": np.zeros((T, 63)),
        "jaw_pose": np.zeros((T, 3)),
        "leye_pose": np.zeros((T, 3)),
        "reye_pose": np.zeros((T, 3)),
        "left_hand_pose": np.zeros((T, 45)),
        "right_hand_pose": np.zeros((T, 45)),
        "expression": np.zeros((T, 10)),
        "transl": np.zeros((T, 3)),
    }
    params.update(overrides)
    return params


def _mesh(model_file, tmp_path, **overrides):
    path = tmp_path / "params.npz"
    np.savez(path, **_params(**overrides))
    return smplx_vertices(load_smplx_params(path), model_file)


def _owner(vertex: np.ndarray) -> np.ndarray:
    """Joint that owns each vertex in the synthetic model (clusters of 190)."""
    return np.minimum(vertex // (NUM_VERTICES // 55), 54)


def test_synthetic_model_meshes_through_smplx(model_file, tmp_path):
    template = np.load(model_file)["v_template"]
    vertices, joints, faces = _mesh(model_file, tmp_path, transl=np.tile([0.1, -0.2, 0.3], (T, 1)))
    assert vertices.shape == (T, NUM_VERTICES, 3) and faces.shape[1] == 3
    body = _owner(np.arange(NUM_VERTICES)) < 25  # fingers are bent by the mean hand pose
    np.testing.assert_allclose(vertices[0, body], template[body] + [0.1, -0.2, 0.3], atol=1e-5)
    np.testing.assert_allclose(
        joints[0, :22], joint_positions()[:22] + np.array([0.1, -0.2, 0.3]), atol=1e-5
    )


def test_pose_parameters_move_the_right_vertices(model_file, tmp_path):
    rest, _, _ = _mesh(model_file, tmp_path)
    turn = np.tile([0.0, np.pi / 2, 0.0], (T, 1))  # 90 degrees about y
    turned, _, _ = _mesh(model_file, tmp_path, global_orient=turn)
    rot = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float)  # pelvis is at the origin
    np.testing.assert_allclose(turned[0], rest[0] @ rot.T, atol=1e-5)

    body_pose = np.zeros((T, 63))
    body_pose[:, (LEFT_ELBOW - 1) * 3 + 2] = 1.0  # bend the left elbow (body_pose skips the pelvis)
    bent, _, _ = _mesh(model_file, tmp_path, body_pose=body_pose)
    moved = np.linalg.norm(bent[0] - rest[0], axis=-1) > 1e-6
    owners = set(_owner(np.flatnonzero(moved)))
    assert LEFT_ELBOW in owners and HEAD not in owners and JAW not in owners

    expression = np.zeros((T, 10))
    expression[:, 0] = 2.0
    smiling, _, _ = _mesh(model_file, tmp_path, expression=expression)
    moved = np.linalg.norm(smiling[0] - rest[0], axis=-1) > 1e-6
    assert set(_owner(np.flatnonzero(moved))) == {HEAD, JAW}


def test_pca_hands_expand_like_smplx(model_file, tmp_path):
    rng = np.random.default_rng(0)
    pca = rng.normal(size=(T, 12))
    ours, _, _ = _mesh(model_file, tmp_path, left_hand_pose=pca, right_hand_pose=pca)
    import smplx

    reference = smplx.SMPLX(model_path=str(model_file), ext="npz", use_pca=True, num_pca_comps=12)
    with torch.no_grad():
        out = reference(
            left_hand_pose=torch.tensor(pca, dtype=torch.float32),
            right_hand_pose=torch.tensor(pca, dtype=torch.float32),
            betas=torch.zeros(T, 10),
            global_orient=torch.zeros(T, 3),
            body_pose=torch.zeros(T, 63),
            jaw_pose=torch.zeros(T, 3),
            leye_pose=torch.zeros(T, 3),
            reye_pose=torch.zeros(T, 3),
            expression=torch.zeros(T, 10),
            transl=torch.zeros(T, 3),
        )
    np.testing.assert_allclose(ours, out.vertices.numpy(), atol=1e-5)
    _, components = load_smplx_model(model_file)
    assert expand_hand_pose(np.zeros((2, 45)), components["left"]).shape == (2, 45)


def test_show_pickle_layout_with_camera(tmp_path):
    show = {
        "width": 1280,
        "height": 720,
        "center": np.array([640.0, 360.0]),
        "batch_size": T,
        "camera_transl": np.array([0.0, 0.3, 6.0], np.float32),
        "focal_length": np.float64(5000.0),
        "body_pose_axis": np.zeros((T, 21, 3), np.float32),
        "expression": np.ones((T, 100), np.float32),
        "jaw_pose": np.zeros((T, 3), np.float32),
        "betas": np.zeros(300, np.float32),
        "global_orient": np.tile(np.float32([3.07, 0.0, 0.0]), (T, 1)),
        "transl": np.zeros((T, 3), np.float32),
        "left_hand_pose": np.zeros((T, 12), np.float32),
        "right_hand_pose": np.zeros((T, 12), np.float32),
        "leye_pose": np.zeros((T, 3), np.float32),
        "reye_pose": np.zeros((T, 3), np.float32),
        "pose_embedding": np.zeros((T, 32), np.float32),
    }
    path = tmp_path / "seq.pkl"
    path.write_bytes(pickle.dumps(show, protocol=2))
    params = load_smplx_params(path)
    assert len(params) == T and params.body_pose.shape == (T, 63) and params.betas.shape == (300,)
    assert params.left_hand_pose.shape == (T, 12) and params.expression.shape == (T, 100)
    assert params.camera.kind == "perspective" and params.camera.focal == 5000.0
    assert params.camera.image_size == (1280, 720) and params.fps == 30.0


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return (os.mkdir, (str(self.target),))


def test_pickles_with_code_are_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"body_pose": np.zeros((2, 63)), "x": _Exploit(marker)}))
    with pytest.raises(InputError, match=r"convert the file to \.npz"):
        load_smplx_params(path)
    assert not marker.exists()


def test_model_file_is_read_without_unpickling(model_file, tmp_path):
    marker = tmp_path / "pwned"
    arrays = dict(np.load(model_file))
    evil = tmp_path / "SMPLX_EVIL.npz"
    np.savez(evil, joint2num=np.array([_Exploit(marker)], dtype=object), **arrays)
    model, _ = load_smplx_model(evil)  # the object entry is never read
    assert model.v_template.shape == (NUM_VERTICES, 3) and not marker.exists()
    arrays["v_template"] = np.array([_Exploit(marker)], dtype=object)
    np.savez(evil, **arrays)
    with pytest.raises(InputError, match="unpickled"):
        load_smplx_model(evil)
    assert not marker.exists()
    with pytest.raises(InputError, match=r"\.npz"):
        load_smplx_model(tmp_path / "SMPLX_NEUTRAL.pkl")


def test_talkshow_npy_and_amass_poses(tmp_path):
    packed = np.arange(4 * 265, dtype=np.float64).reshape(4, 265)
    np.save(tmp_path / "talkshow.npy", packed)
    params = load_smplx_params(tmp_path / "talkshow.npy", fps=25)
    np.testing.assert_array_equal(params.global_orient, packed[:, 9:12])
    np.testing.assert_array_equal(params.expression, packed[:, 165:265])
    assert params.fps == 25
    poses = np.arange(5 * 165, dtype=np.float64).reshape(5, 165)
    np.savez(
        tmp_path / "amass.npz",
        poses=poses,
        betas=np.ones(16),
        trans=np.ones((5, 3)),
        mocap_frame_rate=60.0,
    )
    params = load_smplx_params(tmp_path / "amass.npz")
    np.testing.assert_array_equal(params.body_pose, poses[:, 3:66])
    np.testing.assert_array_equal(params.right_hand_pose, poses[:, 120:165])
    assert (
        params.transl.shape == (5, 3) and params.fps == 60.0 and params.expression.shape == (5, 0)
    )


def test_bad_parameter_files(tmp_path):
    np.savez(tmp_path / "nothing.npz", foo=np.zeros(3))
    with pytest.raises(InputError, match="no per-frame SMPL-X parameters"):
        load_smplx_params(tmp_path / "nothing.npz")
    np.savez(tmp_path / "short.npz", body_pose=np.zeros((4, 63)), global_orient=np.zeros((3, 3)))
    with pytest.raises(InputError, match="has shape"):
        load_smplx_params(tmp_path / "short.npz")
    with pytest.raises(InputError, match="not found"):
        load_smplx_params(tmp_path / "missing.npz")


def test_orthographic_projection():
    camera = Camera("orthographic", translation=np.array([0.5, 0.0, 0.0]), scale=0.5)
    points = np.array([[[-0.5, 0.0, 1.0], [1.5, 2.0, 3.0]]])  # (1, 2, 3)
    out = project_to_image(points, camera, 100)
    np.testing.assert_allclose(out[0, 0], [50.0, 50.0, 25.0])
    np.testing.assert_allclose(out[0, 1], [100.0, 100.0, 75.0])


def test_weak_perspective_cam_per_frame(tmp_path):
    cam = np.array([[0.5, 0.1, 0.0], [0.25, 0.0, 0.2]])
    np.savez(tmp_path / "p.npz", body_pose=np.zeros((2, 63)), cam=cam)
    camera = load_smplx_params(tmp_path / "p.npz").camera
    assert camera.kind == "orthographic"
    out = project_to_image(np.zeros((2, 1, 3)), camera, 100)
    np.testing.assert_allclose(out[:, 0, :2], [[52.5, 50.0], [50.0, 52.5]])
    with pytest.raises(InputError, match="camera has 2 frames"):
        project_to_image(np.zeros((3, 1, 3)), camera, 100)


def test_perspective_projection_fits_camera_image_into_square():
    camera = Camera(
        "perspective",
        translation=np.zeros(3),
        focal=1000.0,
        principal=(640.0, 360.0),
        image_size=(1280, 720),
    )
    points = np.array([[[0.0, 0.0, 5.0], [0.64 * 5, 0.36 * 5, 5.0], [0.0, 0.0, 6.0]]])
    out = project_to_image(points, camera, 512)
    fit = 512 / 1280
    np.testing.assert_allclose(out[0, 0, :2], [256.0, 256.0], atol=1e-3)
    np.testing.assert_allclose(out[0, 1, :2], [1280 * fit, 512 - (512 - 720 * fit) / 2], atol=1e-3)
    assert out[0, 2, 2] > out[0, 0, 2]  # farther is larger
    # Depth is in pixels: 1 m at 5 m depth spans focal * fit / 5 px in x, and in z.
    assert out[0, 2, 2] - out[0, 0, 2] == pytest.approx(1000 * fit / 5.0, rel=1e-5)
    with pytest.raises(InputError, match="behind the camera"):
        project_to_image(-points, camera, 512)


def test_mesh_sequence_end_to_end_and_round_trip(model_file, tmp_path):
    path = tmp_path / "params.npz"
    np.savez(path, **_params(), fps=np.float64(24.0))  # y-up body, no camera
    mesh = smplx_to_mesh_sequence(path, model_file, size=128)
    assert mesh.vertices.shape == (T, NUM_VERTICES, 3) and mesh.fps == 24.0
    assert mesh.vertices[..., :2].min() >= 0 and mesh.vertices[..., :2].max() <= 128
    head = mesh.vertices[0, _owner(np.arange(NUM_VERTICES)) == HEAD, 1].mean()
    feet = mesh.vertices[0, _owner(np.arange(NUM_VERTICES)) == 10, 1].mean()
    assert head < feet  # upright in the image
    mesh.save(tmp_path / "mesh.npz")
    loaded = MeshSequence.load(tmp_path / "mesh.npz")
    np.testing.assert_array_equal(loaded.vertices, mesh.vertices)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    assert loaded.fps == 24.0
    # SHOW's convention: global_orient of pi about x turns the body into the camera frame.
    show = _params(global_orient=np.tile([np.pi, 0.0, 0.0], (T, 1)))
    np.savez(
        path, **show, focal_length=1000.0, camera_transl=[0.0, 0.0, 5.0], width=640, height=480
    )
    mesh = smplx_to_mesh_sequence(path, model_file, size=128)
    rows = mesh.vertices[0, :, 1]
    owner = _owner(np.arange(NUM_VERTICES))
    assert rows[owner == HEAD].mean() < rows[owner == 10].mean()
    assert mesh.vertices[..., :2].min() >= 0 and mesh.vertices[..., :2].max() <= 128
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError):
        MeshSequence.load(tmp_path / "bad.npz")


def test_fitted_camera_frames_whole_sequence():
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(4, 50, 3)) + np.array([3.0, -2.0, 5.0])
    out = project_to_image(vertices, fit_orthographic_camera(vertices, margin=0.1), 200)
    assert out[..., :2].min() >= 9.9 and out[..., :2].max() <= 190.1
