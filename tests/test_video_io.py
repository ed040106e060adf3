from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from anchorgen.errors import InputError
from anchorgen.io.video import (
    VideoWriter,
    apply_rotation,
    iter_frames,
    probe_video,
    read_audio,
    resample_times,
    write_video,
)
from tests.conftest import REPO


def _numbered_frames(n, size=(48, 64)):
    """Frame i is a flat grey of value 8 * i (decodable back to i despite compression)."""
    return [np.full((*size, 3), min(8 * i, 255), np.uint8) for i in range(n)]


def _frame_number(frame):
    return round(float(frame.mean()) / 8)


def _write_vfr(path, times, size=(48, 64)):
    """Encode frames at arbitrary timestamps (seconds) -> a variable-frame-rate MP4."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1000)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.options = {"crf": "0"}
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), 8 * i, np.uint8), format="rgb24")
            frame.pts = round(t * 1000)
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_resample_times_nearest_and_count():
    src = np.array([0.0, 0.1, 0.15, 0.4, 0.5])
    picks = resample_times(src, fps=10, start=0.0, end=0.55)
    # output times 0, .1, .2, .3, .4, .5 -> nearest source frames
    assert picks.tolist() == [0, 1, 2, 3, 3, 4]


def test_constant_rate_roundtrip_and_resampling(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, _numbered_frames(25), fps=25, crf=0)
    info = probe_video(path)
    assert (info.width, info.height, info.fps) == (64, 48, 25.0)
    same = list(iter_frames(path))
    assert [_frame_number(f) for f in same] == list(range(25))
    half = list(iter_frames(path, fps=12.5))
    assert [_frame_number(f) for f in half] == list(range(0, 25, 2))
    window = list(iter_frames(path, start=0.4, end=0.6))
    assert [_frame_number(f) for f in window] == list(range(10, 15))


def test_variable_frame_rate_is_resampled(tmp_path):
    times = [0.0, 0.03, 0.05, 0.2, 0.21, 0.4, 0.45, 0.5, 0.6, 0.82, 0.84, 0.95]
    path = tmp_path / "vfr.mp4"
    _write_vfr(path, times)
    frames = list(iter_frames(path, fps=10))
    expected = resample_times(np.array(times), 10, 0.0, probe_video(path).duration)
    assert [_frame_number(f) for f in frames] == expected.tolist()[: len(frames)]
    assert len(frames) >= 9


def test_rotation_is_counter_clockwise():
    frame = np.zeros((2, 3, 1), np.uint8)
    frame[0, 2] = 1  # top-right
    rotated = apply_rotation(frame, 90)
    assert rotated.shape == (3, 2, 1)
    assert rotated[0, 0, 0] == 1  # top-right moves to top-left under a CCW quarter turn
    assert np.array_equal(apply_rotation(frame, -270), rotated)
    assert np.array_equal(apply_rotation(frame, 0), frame)


def test_audio_is_muxed_with_matching_duration(tmp_path):
    path = tmp_path / "av.mp4"
    audio = (0.2 * np.sin(np.arange(16000 * 3) / 16000 * 2 * np.pi * 300)).astype(np.float32)
    write_video(path, _numbered_frames(30), fps=25, audio=audio)  # video 1.2 s, audio longer
    decoded = read_audio(path)
    assert (
        abs(len(decoded) / 16000 - 1.2) <= 1 / 25 + 1024 / 16000
    )  # within a frame + codec priming
    with av.open(str(path)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"


def test_writer_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError), VideoWriter(path, 25) as writer:
        writer.write(np.zeros((32, 32, 3), np.uint8))
        raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == []


def test_writer_on_a_full_disk_leaves_nothing(tmp_path):
    """A real write failure inside the muxer (a file-size limit stands in for a full disk)
    raises, and no file, complete-looking or partial, is left behind."""
    script = tmp_path / "write.py"
    script.write_text(
        "import numpy as np\n"
        "from anchorgen.io.video import VideoWriter\n"
        "noise = np.random.default_rng(0).integers(0, 255, (60, 128, 128, 3), dtype=np.uint8)\n"
        f"with VideoWriter({str(tmp_path / 'out.mp4')!r}, 25) as writer:\n"
        "    for frame in noise:\n"
        "        writer.write(frame)\n"
    )

    def limit_file_size() -> None:  # in the child: writes past 64 KiB fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-B", str(script)],
        preexec_fn=limit_file_size,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0 and "File too large" in result.stderr
    assert os.listdir(tmp_path) == ["write.py"]


def test_writer_refuses_missing_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_video(tmp_path / "missing" / "out.mp4", _numbered_frames(2), fps=25)


def test_bad_inputs(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    with pytest.raises(InputError):
        probe_video(text)
    with pytest.raises(InputError, match="no such file"):
        probe_video(tmp_path / "absent.mp4")
    good = tmp_path / "good.mp4"
    write_video(good, _numbered_frames(20), fps=25)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    with pytest.raises(InputError):
        list(iter_frames(truncated))
