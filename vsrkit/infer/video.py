"""Video files in and out, through PyAV (FFmpeg's libraries; the optional ``video`` extra).

PyAV decodes and encodes in-process (its wheels carry FFmpeg, so nothing else is installed),
frame by frame: a long video is never held in memory. Without it, opening a video raises
:class:`~vsrkit.infer.errors.VideoSupportMissing` with the one line that says what to install.

- :class:`VideoReader`: RGB frames of the first video stream, lazily, with the stream's frame
  rate; an unreadable file, a file without video, and a truncated file (fewer frames decoded
  than the container declares) are errors that name the file.
- :class:`VideoWriter`: H.264 (``libx264``, CRF 17, ``yuv420p``) in ``.mp4``, ``.mkv`` and
  ``.mov``; MPEG-4 part 2 in ``.avi``. The file is written to a temporary name beside the
  target and renamed when complete (:func:`vsrkit._atomic.atomic_open`): an interrupted run
  leaves no half video under the final name.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from vsrkit._atomic import atomic_open, remove_temp_files
from vsrkit.infer.errors import InferenceError, VideoSupportMissing

__all__ = ["MAX_FPS", "VIDEO_EXTENSIONS", "VideoReader", "VideoWriter", "is_video_path"]

#: The highest frame rate written (players and containers refuse absurd ones).
MAX_FPS = 1000

#: File extensions read and written as video (container format for PyAV).
VIDEO_EXTENSIONS: dict[str, str] = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi"}


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has a video file extension (``.mp4``, ``.mkv``, ``.mov``, ``.avi``)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise VideoSupportMissing(
            'video files need PyAV: pip install "vsrkit[video]" (in a source checkout: '
            'pip install -c constraints.txt -e ".[video]")'
        ) from None
    return av


def _av_message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split("] ", 1)[-1] if text.startswith("[Errno") else text


class VideoReader:
    """The frames of a video file as ``(3, h, w)`` uint8 tensors, decoded lazily.

    Iterating twice decodes the file twice. Opening reads the container's header only.

    Args:
        path: the video file.

    Attributes:
        fps: frame rate (``Fraction``), the stream's average rate.
        size: ``(h, w)`` of the frames.
        declared_frames: the number of frames the container declares, ``None`` if unknown
            (Matroska: then its duration times the rate, less 1%, is the least expected).
        has_audio: the file has an audio stream (vsrkit reads and writes video only).
        comment: the container's ``comment`` tag, ``None`` without one (``vsrkit upscale``
            writes what made the video there).

    Raises:
        VideoSupportMissing: PyAV is not installed.
        InferenceError: a missing or unreadable file, no video stream; while iterating: a
            decoding error, or fewer frames than declared (a truncated file).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        av = _av()
        if not self.path.is_file():
            raise InferenceError(f"{self.path}: no such video file")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise InferenceError(
                        f"{self.path}: has no video stream (audio only, or a truncated or "
                        "damaged file)"
                    )
                self.has_audio = bool(container.streams.audio)
                tags = {str(k).lower(): v for k, v in container.metadata.items()}
                self.comment: str | None = tags.get("comment")
                stream = container.streams.video[0]
                ctx = stream.codec_context
                self.size = (int(ctx.height), int(ctx.width))
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.fps = Fraction(rate) if rate else None
                self.declared_frames = int(stream.frames) or None
                # Matroska declares no count, only a duration: expect duration * rate frames
                self._expected = self.declared_frames
                if self._expected is None and container.duration and self.fps:
                    seconds = container.duration / 1_000_000
                    self._expected = int(seconds * self.fps * 0.99) - 1
        except InferenceError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise InferenceError(
                f"{self.path}: not a readable video ({_av_message(exc)})"
            ) from None
        if self.size[0] < 1 or self.size[1] < 1:
            raise InferenceError(f"{self.path}: the video stream has no frame size")

    def __len__(self) -> int:
        if self.declared_frames is None:
            raise TypeError("the container does not declare its frame count")
        return self.declared_frames

    @property
    def names(self) -> list[str]:
        """Output names for the frames, ``00000000`` up (when the count is declared)."""
        return [f"{i:08d}" for i in range(self.declared_frames or 0)]

    def __iter__(self) -> Iterator[Tensor]:
        av = _av()
        count = 0
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    arr = frame.to_ndarray(format="rgb24")
                    if arr.shape[:2] != self.size:
                        raise InferenceError(
                            f"{self.path}: frame {count} is {arr.shape[0]}x{arr.shape[1]}, the "
                            f"stream {self.size[0]}x{self.size[1]}: frames of one size only"
                        )
                    yield torch.from_numpy(arr).permute(2, 0, 1).contiguous()
                    count += 1
        except InferenceError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise InferenceError(
                f"{self.path}: cannot decode frame {count} ({_av_message(exc)}); the file may "
                "be truncated or damaged"
            ) from None
        if count == 0:
            raise InferenceError(f"{self.path}: no frame could be decoded")
        if self._expected is not None and count < self._expected:
            declared = (
                f"the {self.declared_frames} frames it declares"
                if self.declared_frames
                else "the frames its duration declares"
            )
            raise InferenceError(f"{self.path}: truncated: {count} of {declared} could be decoded")


class VideoWriter:
    """Encode frames into a video file, written atomically (see the module docstring).

    Use it as a context manager; the file appears under its name only when the block ends
    without an exception.

    Args:
        path: ``.mp4``, ``.mkv``, ``.mov`` or ``.avi``.
        fps: frame rate.
        crf: H.264 constant rate factor (lower is better; 17 is visually lossless).
        comment: text for the container's ``comment`` tag (read back as ``VideoReader.comment``).

    Raises:
        VideoSupportMissing: PyAV is not installed.
        InferenceError: an unknown extension, a frame of another size.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float | Fraction,
        crf: int = 17,
        comment: str | None = None,
    ):
        self.path = Path(path)
        self._av = _av()
        fmt = VIDEO_EXTENSIONS.get(self.path.suffix.lower())
        if fmt is None:
            raise InferenceError(
                f"{self.path}: unknown video extension; use one of {', '.join(VIDEO_EXTENSIONS)}"
            )
        if not 0 < float(fps) <= MAX_FPS:  # also refuses NaN
            raise InferenceError(f"frame rate must be in (0, {MAX_FPS}] frames/s, got {fps}")
        self.format = fmt
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        self.crf = int(crf)
        self.comment = comment
        self.frames = 0
        self._atomic: contextlib.AbstractContextManager[IO[Any]] | None = None
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        remove_temp_files(self.path.parent, glob.escape(self.path.name))  # a killed earlier run
        self._atomic = atomic_open(self.path, "wb")
        fh = self._atomic.__enter__()
        try:
            self._container = self._av.open(fh, mode="w", format=self.format)
            if self.comment is not None:
                self._container.metadata["comment"] = self.comment
        except BaseException:
            self._atomic.__exit__(*_exc_info())
            raise
        return self

    def _open_stream(self, h: int, w: int) -> None:
        codecs = self._av.codecs_available
        if self.format != "avi" and "libx264" in codecs:
            stream = self._container.add_stream("libx264", rate=self.fps)
            stream.options = {"crf": str(self.crf), "preset": "medium"}
        else:
            stream = self._container.add_stream("mpeg4", rate=self.fps)
            stream.bit_rate = max(2_000_000, 8 * h * w * int(float(self.fps) + 1) // 6)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        self._stream, self._size = stream, (h, w)

    def write(self, frame: Tensor) -> None:
        """Append a ``(3, h, w)`` frame (float in [0, 1], clamped, or uint8)."""
        if self._container is None:
            raise InferenceError("VideoWriter.write outside its with-block")
        if frame.dtype != torch.uint8:
            frame = (frame.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
        h, w = int(frame.shape[-2]), int(frame.shape[-1])
        if self._size is None:
            if h % 2 or w % 2:
                raise InferenceError(f"video frames need an even size, got {h}x{w}")
            self._open_stream(h, w)
        elif (h, w) != self._size:
            raise InferenceError(
                f"frame {self.frames} is {h}x{w}, the video {self._size[0]}x{self._size[1]}"
            )
        arr = np.ascontiguousarray(frame.cpu().permute(1, 2, 0).numpy())
        video_frame = self._av.VideoFrame.from_ndarray(arr, format="rgb24")
        try:
            self._container.mux(self._stream.encode(video_frame))
        except (OSError, self._av.error.FFmpegError) as exc:  # a full disk, a file size limit
            raise InferenceError(f"cannot write {self.path}: {_av_message(exc)}") from None
        self.frames += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._atomic is not None
        try:
            if exc_type is None:
                if self._stream is None:
                    raise InferenceError(f"{self.path}: no frames to write")
                try:
                    self._container.mux(self._stream.encode(None))  # flush the encoder
                    self._container.close()
                except (OSError, self._av.error.FFmpegError) as err:
                    raise InferenceError(f"cannot write {self.path}: {_av_message(err)}") from None
            else:
                self._container.close()
        except BaseException:
            if exc_type is None:  # a failure while finishing: remove the temp file, raise
                with contextlib.suppress(Exception):
                    self._container.close()
                self._atomic.__exit__(*_exc_info())
                self._atomic = None
                raise
        atomic, self._atomic = self._atomic, None
        atomic.__exit__(exc_type, exc, tb)


def _exc_info() -> tuple[Any, Any, Any]:
    import sys

    return sys.exc_info()
