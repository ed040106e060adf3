"""Identity-specific face enhancement (Make-Your-Anchor+ Algorithm 2), temporally denoised.

For every generated frame the face is cropped with its alignment affine (line 2), the
face-oval mask M marks the region to regenerate, the crop with M blanked is encoded
(lines 4-6, through the model's own ``inpaint_inputs``, the function training uses), the
condition render is cropped with the same affine (line 8), and the inpainting face SGDM
regenerates the face from noise given mask, masked latent, face condition and the face
reference's appearance tokens (lines 10-12). Unlike the paper's frame-wise enhancement
(which costs FVD, section V-C2) the face sequence is denoised with the same
batch-overlapped temporal loop as the body (``denoise_overlapped``). The decoded faces are
blended back through the inverse affine with the feathered mask (lines 14-16); pixels where
the mask is zero are returned unchanged.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anchorgen.errors import InputError
from anchorgen.pipelines.accel import cache_frames
from anchorgen.pipelines.anchor import (
    Inpainting,
    StepCallback,
    appearance_tokens,
    as_frame_source,
    batches_across_ranks,
    decode_across_ranks,
    decode_latents,
    denoise_overlapped,
    image_to_unit_tensor,
    initial_latents,
    latent_shape,
    plan_windows,
    rank_and_world,
    to_uint8_frames,
)
from anchorgen.prepare.face import face_align_affine, face_mask, paste_back, warp_face


class FaceConditions:
    """``FrameSource`` of face crops of the condition renders, warped lazily per slice.

    ``conditions`` is the full-frame condition source; ``frame_indices`` (M,) the frames
    with a face and ``affines`` (N, 2, 3) their alignment; item j is frame
    ``frame_indices[j]`` warped to (3, S, S) with zero padding.
    """

    def __init__(self, conditions: Any, frame_indices: np.ndarray, affines: np.ndarray, size: int):
        self.conditions = conditions
        self.frame_indices = frame_indices
        self.affines = affines
        self.size = size

    def __len__(self) -> int:
        return len(self.frame_indices)

    def __getitem__(self, index: slice) -> torch.Tensor:
        crops = []
        for frame in self.frame_indices[index]:
            image = (
                self.conditions[int(frame) : int(frame) + 1][0].movedim(0, -1).numpy()
            )  # (H, W, 3)
            crops.append(warp_face(image, self.affines[frame], self.size, pad_mode="constant"))
        return torch.from_numpy(np.stack(crops)).movedim(-1, 1).float()  # (F, 3, S, S)


class SelectedFrames:
    """``FrameSource`` of the frames ``frame_indices`` of another source (e.g. face-space renders)."""

    def __init__(self, source: Any, frame_indices: np.ndarray):
        self.source = as_frame_source(source)
        self.frame_indices = frame_indices

    def __len__(self) -> int:
        return len(self.frame_indices)

    def __getitem__(self, index: slice) -> torch.Tensor:
        return torch.cat([self.source[int(i) : int(i) + 1] for i in self.frame_indices[index]])


class FacePipeline:
    """Face enhancement over a generated video with an inpainting face SGDM.

    ``face_model`` is a ``StructureGuidedDiffusion`` with ``inpainting=True``; ``scheduler``
    a diffusers scheduler (``face_model.make_scheduler("ddim")`` when None).
    """

    def __init__(self, face_model: Any, scheduler: Any = None) -> None:
        if not getattr(face_model, "inpainting", False):
            raise InputError("face enhancement needs an inpainting face model (inpainting=True)")
        self.model = face_model
        self.scheduler = scheduler if scheduler is not None else face_model.make_scheduler("ddim")

    def enhance_frames(
        self,
        frames: Any,
        face_reference: Any,
        conditions: Any,
        face_points: np.ndarray,
        affines: np.ndarray | None = None,
        *,
        face_conditions: Any = None,
        crop_size: int = 256,
        feather_px: float | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.5,
        controlnet_conditioning_scale: float = 2.0,
        window_size: int = 16,
        window_overlap: int = 4,
        windows_per_batch: int = 1,
        generator: torch.Generator | None = None,
        temporal: bool = True,
        callback: StepCallback | None = None,
        progress: bool = True,
        latents: torch.Tensor | None = None,
        latents_device: str | torch.device = "cpu",
        decode_batch_size: int = 16,
        condition_cache_bytes: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield the enhanced video as uint8 (H, W, 3) frames, in order.

        ``frames``: the generated body video, indexable uint8 (N, H, W, 3) (an array, or an
        ``np.memmap`` from ``spool_frames`` for long videos; read twice).
        ``face_reference``: the reference's aligned face crop, uint8 (S, S, 3) or float
        (3, S, S) in [0, 1], S = ``crop_size``. ``conditions``: the full-frame condition
        renders (as for ``AnchorPipeline``). ``face_points`` (N, 478, 3): face mesh per frame
        in frame pixels (from the motion, or re-detected on the generated frames); frames
        whose points are missing (NaN) pass through unchanged. ``affines`` (N, 2, 3): the
        alignment per frame, computed from ``face_points`` when None. ``face_conditions``:
        condition renders already in face space, (N, S, S) per frame, as the face model was
        trained on (``prepare`` renders them in face space); when None they are cut out of
        ``conditions`` with the affines. ``latents``: initial
        noise for the M frames with a face, (M, C, h, w). ``latents_device``: where the face
        latents and the inpainting inputs live. ``condition_cache_bytes``: uint8
        ``face_conditions`` up to this size are kept on the model's device
        (``accel.cache_frames``). ``feather_px``: blend-mask feather; None: 12 px per 256 px
        of crop, as ``prepare``'s training masks. Other arguments as ``AnchorPipeline``.
        Under a process group of several ranks every rank calls this: the inpainting
        inputs, the denoise windows and the decode are split across them, all before the
        first frame is yielded, and every rank then yields the whole video.
        """
        conditions = as_frame_source(conditions)
        length = len(frames)
        face_points = np.asarray(face_points, np.float64)
        if len(conditions) != length or len(face_points) != length:
            raise InputError(
                f"{length} frames, {len(conditions)} conditions and {len(face_points)} face meshes differ in length"
            )
        if affines is None:
            affines = np.full((length, 2, 3), np.nan)
            for i in np.flatnonzero(np.isfinite(face_points[:, :, :2]).all(axis=(1, 2))):
                affines[i] = face_align_affine(face_points[i], crop_size)
        affines = np.asarray(affines, np.float64)
        with_face = np.flatnonzero(
            np.isfinite(affines).all(axis=(1, 2))
            & np.isfinite(face_points[:, :, :2]).all(axis=(1, 2))
        )
        if with_face.size == 0:
            yield from (np.asarray(frames[i]) for i in range(length))
            return

        reference = image_to_unit_tensor(face_reference)
        if reference.dim() == 3:
            reference = reference[None]
        if reference.shape[-2:] != (crop_size, crop_size):
            raise InputError(
                f"face reference is {tuple(reference.shape[-2:])}, expected {crop_size}x{crop_size}"
            )

        feather = 12.0 * crop_size / 256 if feather_px is None else feather_px

        def blend_mask(i: int) -> np.ndarray:  # (S, S) float32 in [0, 1]
            return face_mask(face_points[i], affines[i], crop_size, feather)

        inpaint = self._inpainting_inputs(
            frames, with_face, affines, blend_mask, crop_size, decode_batch_size
        )
        inpaint = Inpainting(
            inpaint.mask.to(latents_device), inpaint.masked_latents.to(latents_device)
        )
        if face_conditions is not None:
            face_conditions = cache_frames(
                face_conditions, self.model.device, condition_cache_bytes
            )
        face_latents = initial_latents(
            self.model,
            self.scheduler,
            len(with_face),
            crop_size,
            crop_size,
            generator,
            latents,
            latents_device,
        )
        windows, windows_per_batch = plan_windows(
            self.model, len(with_face), window_size, window_overlap, temporal, windows_per_batch
        )
        tokens, null_tokens = appearance_tokens(self.model, reference)
        final = denoise_overlapped(
            self.model,
            self.scheduler,
            face_latents,
            FaceConditions(conditions, with_face, affines, crop_size)
            if face_conditions is None
            else SelectedFrames(face_conditions, with_face),
            tokens,
            null_tokens,
            windows=windows,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            conditioning_scale=controlnet_conditioning_scale,
            windows_per_batch=windows_per_batch,
            inpaint=inpaint,
            callback=callback,
            progress=progress,
            description="face" if temporal else "face (frame-wise)",
        )

        several_ranks = rank_and_world()[1] > 1
        spool = (  # the faces decoded across ranks are gathered in a disk-backed spool
            tempfile.TemporaryDirectory(prefix="anchorgen_faces_")
            if several_ranks
            else contextlib.nullcontext()
        )
        with spool as spool_dir:
            if several_ranks:  # decoded across ranks before the first frame
                faces: Iterator[np.ndarray] = iter(
                    decode_across_ranks(
                        self.model,
                        final,
                        decode_batch_size,
                        Path(spool_dir) / "faces.npy",
                        progress,
                    )
                )
            else:
                faces = (
                    face
                    for images in decode_latents(self.model, final, decode_batch_size, progress)
                    for face in to_uint8_frames(images)
                )
            face_slots = set(with_face.tolist())
            for i in range(length):
                frame = np.asarray(frames[i])
                if i in face_slots:
                    frame = paste_back(frame, next(faces), affines[i], blend_mask(i))
                yield frame

    def _inpainting_inputs(
        self,
        frames: Any,
        with_face: np.ndarray,
        affines: np.ndarray,
        blend_mask: Any,
        crop_size: int,
        batch_size: int,
    ) -> Inpainting:
        """Masks and masked-face latents (Algorithm 2 lines 2-6) for the frames with a face, on
        the host; with several processes each rank computes its share of the batches
        (``batches_across_ranks``) and all of them receive every result."""

        def compute(start: int, stop: int) -> torch.Tensor:  # (F, 1 + C, h, w) float32
            chunk = with_face[start:stop]
            crops = np.stack(
                [warp_face(np.asarray(frames[i]), affines[i], crop_size) for i in chunk]
            )
            crop = image_to_unit_tensor(crops)[None] * 2 - 1  # (1, F, 3, S, S) in [-1, 1]
            mask = torch.from_numpy(np.stack([blend_mask(i) for i in chunk]))[
                None, :, None
            ]  # (1, F, 1, S, S)
            with torch.no_grad():
                small, latents = self.model.inpaint_inputs(
                    crop.to(self.model.device, self.model.dtype),
                    mask.to(self.model.device, self.model.dtype),
                )  # (1, F, 1, h, w), (1, F, C, h, w)
            return torch.cat([small[0], latents[0]], dim=1).float().cpu()

        count = len(with_face)
        if rank_and_world()[1] > 1:
            c, h, w = latent_shape(self.model, crop_size, crop_size)
            parts = [
                block.cpu()
                for _, block in batches_across_ranks(
                    compute, count, batch_size, (1 + c, h, w), torch.float32, False
                )
            ]
        else:
            parts = [compute(a, min(count, a + batch_size)) for a in range(0, count, batch_size)]
        both = torch.cat(parts)  # (M, 1 + C, h, w)
        return Inpainting(mask=both[:, :1], masked_latents=both[:, 1:])
