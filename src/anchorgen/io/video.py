"""Video and audio decode/encode with PyAV (bundled FFmpeg: no system ffmpeg needed).

Decoding honours rotation metadata and resamples variable frame rate to a constant rate
by nearest-timestamp sampling. Encoding writes H.264 yuv420p MP4 with optional AAC audio
and metadata, atomically: a failed or interrupted write leaves no file behind.
"""

from __future__ import annotations

import dataclasses
import math
import wave
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anchorgen.errors import InputError
from anchorgen.io.atomic import atomic_path

if TYPE_CHECKING:  # PyAV is imported where used: the rest of anchorgen runs without it
    import av

AUDIO_RATE = 16_000


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a container holds, as displayed (rotation applied to width/height)."""

    path: Path
    width: int
    height: int
    fps: float
    duration: float
    """Seconds of video."""
    rotation: int
    """Degrees counter-clockwise the decoder rotates frames for display (0, 90, 180, 270)."""
    codec: str
    has_audio: bool


def _open(path: str | Path) -> av.container.InputContainer:
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        return av.open(str(path), "r")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path} is not a readable video ({exc.__class__.__name__}: {exc})"
        ) from exc


def probe_video(path: str | Path) -> VideoInfo:
    """Read stream properties and the first frame's rotation; errors are ``InputError``."""
    import av

    with _open(path) as container:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise InputError(f"{path}: cannot determine the frame rate")
        duration = _stream_duration(container, stream)
        try:
            first = next(container.decode(video=0))
        except (StopIteration, av.error.FFmpegError) as exc:
            raise InputError(f"{path}: no decodable video frame") from exc
        rotation = _normalise_rotation(getattr(first, "rotation", 0) or 0)
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            path=Path(path),
            width=width,
            height=height,
            fps=float(rate),
            duration=duration,
            rotation=rotation,
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
        )


def _stream_duration(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float:
    import av

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return math.inf


def _normalise_rotation(degrees: float) -> int:
    return int(round(degrees / 90.0)) % 4 * 90


def apply_rotation(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate an (H, W, C) frame counter-clockwise by ``rotation`` degrees (multiple of 90)."""
    k = _normalise_rotation(rotation) // 90
    return np.ascontiguousarray(np.rot90(frame, k=k)) if k else frame


def resample_times(source_times: np.ndarray, fps: float, start: float, end: float) -> np.ndarray:
    """For each output time ``start + k / fps`` < ``end``, the index of the nearest source frame.

    ``source_times`` are the presentation times of the decoded frames (seconds, ascending).
    This is the constant-frame-rate resampling rule used by ``iter_frames``; duplicates and
    drops happen where the source rate differs or varies.
    """
    source_times = np.asarray(source_times, np.float64)
    if source_times.size == 0:
        return np.zeros(0, np.int64)
    count = max(0, int(math.floor((end - start) * fps - 1e-9)) + 1) if end > start else 0
    out_times = start + np.arange(count) / fps
    right = np.searchsorted(source_times, out_times).clip(0, len(source_times) - 1)
    left = (right - 1).clip(0, None)
    pick_left = np.abs(out_times - source_times[left]) <= np.abs(source_times[right] - out_times)
    return np.where(pick_left, left, right)


def iter_frames(
    path: str | Path,
    fps: float | None = None,
    start: float = 0.0,
    end: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 (H, W, 3) frames at a constant ``fps`` (default: the source's).

    Frames are streamed: at most two decoded frames are held at a time. Output frame k is
    the source frame whose timestamp is nearest to ``start + k / fps``.
    """
    import av

    info = probe_video(path)
    fps = float(fps or info.fps)
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    stop = info.duration if end is None else min(end, info.duration)
    if start < 0 or stop <= start:
        raise InputError(
            f"empty time range: start={start}, end={end}, duration={info.duration:.2f}s"
        )
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        # jump to the keyframe before ``start`` instead of decoding from 0
        frames = _seek(container, stream, start, base) if start > 1.0 else container.decode(stream)
        k = 0
        pending: tuple[float, np.ndarray] | None = None
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                if k == 0 and pending is None:
                    raise InputError(f"{path}: cannot decode video ({exc})") from exc
                break  # a truncated tail: keep what decoded
            if frame.pts is None:
                continue
            t = float(frame.pts * frame.time_base) - base
            if pending is not None:
                boundary = (pending[0] + t) / 2.0
                while start + k / fps <= boundary and start + k / fps < stop:
                    yield pending[1]
                    k += 1
            if t > stop + 1.0 / fps:
                pending = None
                break
            if t < start - 1.0:
                continue  # well before the range: no pixel conversion needed
            pending = (t, apply_rotation(frame.to_ndarray(format="rgb24"), info.rotation))
        if pending is not None:
            while start + k / fps < stop and start + k / fps <= pending[0] + 1.0 / fps:
                yield pending[1]
                k += 1
    if k == 0:
        raise InputError(f"{path}: zero decodable frames in [{start}, {stop}] s")


def _seek(container, stream, start: float, base: float) -> Iterator:
    """Decoded frames from the keyframe at or before ``start`` seconds.

    Containers with an index (MP4, MKV) land exactly there; where the first frame comes
    after ``start`` (a seek by estimate), decoding starts again from a second earlier.
    """
    for margin in (0.0, 1.0):
        container.seek(
            int((start + base - margin) / stream.time_base), stream=stream, backward=True
        )
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None:
            return
        if margin or first.pts is None or float(first.pts * first.time_base) - base <= start:
            yield first
            yield from frames
            return


def read_audio(
    path: str | Path, start: float = 0.0, end: float | None = None, sample_rate: int = AUDIO_RATE
) -> np.ndarray | None:
    """Decode the first audio stream to mono float32 at ``sample_rate``; None if none."""
    import av

    with _open(path) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError:
            pass  # a truncated tail: keep what decoded
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    first = int(round(start * sample_rate))
    last = None if end is None else int(round(end * sample_rate))
    return audio[first:last].astype(np.float32)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = AUDIO_RATE) -> None:
    """Write mono float audio in [-1, 1] as 16-bit PCM WAV, atomically."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV/any audio file as mono float32; returns (audio, sample_rate)."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() == 2:
                data = (
                    np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32)
                    / 32768.0
                )
                data = data.reshape(-1, wav.getnchannels()).mean(axis=1)
                return data, wav.getframerate()
    except (wave.Error, EOFError):
        pass
    audio = read_audio(path)
    if audio is None:
        raise InputError(f"{path} has no audio stream")
    return audio, AUDIO_RATE


class VideoWriter:
    """Stream frames into an H.264 yuv420p MP4, optionally with audio, written atomically.

    Use as a context manager; the file appears under its final name only when the block
    exits without an exception (disk full, interrupt: nothing half-written is left).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        *,
        audio: np.ndarray | None = None,
        audio_rate: int = AUDIO_RATE,
        metadata: dict[str, str] | None = None,
        crf: int = 18,
    ) -> None:
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.audio = audio
        self.audio_rate = audio_rate
        self.metadata = metadata or {}
        self.crf = crf
        self.frames_written = 0
        self._ctx = atomic_path(self.path)
        self._container = None
        self._video = None
        self._audio = None
        self._audio_done = 0

    def __enter__(self) -> VideoWriter:
        import av

        tmp = self._ctx.__enter__()
        self._container = av.open(
            str(tmp), "w", format="mp4", options={"movflags": "+faststart+use_metadata_tags"}
        )
        self._container.metadata.update(self.metadata)
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 (H, W, 3) frame; H and W must be even (yuv420p).

        Audio is encoded alongside, up to the end of this frame, so packets interleave and
        memory stays flat however long the video is.
        """
        import av

        if self._video is None:
            self._add_streams(*frame.shape[:2])
        video_frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(frame, np.uint8), format="rgb24"
        )
        for packet in self._video.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1
        if self._audio is not None:
            self._encode_audio_until(
                int(round(self.frames_written / float(self.fps) * self.audio_rate))
            )

    def _add_streams(self, height: int, width: int) -> None:
        if height % 2 or width % 2:
            raise InputError(f"frame size {width}x{height} must be even for yuv420p")
        self._video = self._container.add_stream("libx264", rate=self.fps)
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(self.crf), "preset": "medium"}
        if self.audio is not None and len(self.audio):
            self._audio = self._container.add_stream("aac", rate=self.audio_rate)
            self._audio.layout = "mono"

    def _encode_audio_until(self, sample: int, *, final: bool = False) -> None:
        """Encode audio samples [encoded, sample) in 1024-sample frames (the last may be short
        when ``final``); silence pads audio shorter than the video."""
        import av

        while self._audio_done + (1 if final else 1024) <= sample:
            size = min(1024, sample - self._audio_done)
            part = np.zeros(size, np.float32)
            src = np.asarray(self.audio[self._audio_done : self._audio_done + size], np.float32)
            part[: len(src)] = src
            frame = av.AudioFrame.from_ndarray(part.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = self.audio_rate
            frame.pts = self._audio_done
            for packet in self._audio.encode(frame):
                self._container.mux(packet)
            self._audio_done += size

    def __exit__(self, exc_type, exc, tb) -> None:
        error = exc
        try:
            if exc_type is None:
                self._finish()
        except BaseException as failure:
            error = failure
            raise
        finally:
            try:
                self._container.close()
            finally:
                if error is None:
                    self._ctx.__exit__(None, None, None)
                else:
                    self._ctx.__exit__(type(error), error, error.__traceback__)

    def _finish(self) -> None:
        if self._video is None:
            raise InputError(f"no frames were written to {self.path}")
        for packet in self._video.encode(None):
            self._container.mux(packet)
        if self._audio is not None:
            total = round(self.frames_written / float(self.fps) * self.audio_rate)
            self._encode_audio_until(total, final=True)
            for packet in self._audio.encode(None):
                self._container.mux(packet)


def write_video(path: str | Path, frames, fps: float, **kwargs) -> int:
    """Write an iterable of frames; returns the number written."""
    with VideoWriter(path, fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames_written
