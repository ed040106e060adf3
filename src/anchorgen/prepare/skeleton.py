"""Skeleton condition images: landmarks drawn as part-coloured lines on black.

The alternative to the shaded mesh of :mod:`anchorgen.prepare.render`. The mesh draws
every body part in one colour, so an arm in front of the torso is told apart only by a
shading edge. Here each limb and each hand has a colour of its own, and the face is its
mesh points. On the kitchen clip's held-out 4 s, the same plain pixel UNet scored 2.5 dB
higher with these images than with the mesh renders (docs/BENCHMARKS.md, "Eighth GPU
session").

Line widths scale with the image: at 128 px the body lines are 2 px and the hand lines
1 px wide.
"""

from __future__ import annotations

import cv2
import numpy as np

REFERENCE_SIZE = 128
"""Image side at which the body lines are 2 px and the hand lines 1 px wide."""
BODY_LINES = {
    # MediaPipe pose index pairs -> RGB colour
    (11, 12): (255, 255, 0),  # shoulders
    (11, 23): (255, 160, 0),  # torso sides
    (12, 24): (255, 160, 0),
    (23, 24): (255, 255, 0),  # hips
    (11, 13): (0, 0, 255),  # the person's left upper arm
    (13, 15): (0, 128, 255),  # left forearm
    (12, 14): (255, 0, 0),  # right upper arm
    (14, 16): (255, 0, 128),  # right forearm
}
HAND_BONES = (
    *((0, 1), (1, 2), (2, 3), (3, 4)),  # thumb
    *((0, 5), (5, 6), (6, 7), (7, 8)),  # index finger
    *((5, 9), (9, 10), (10, 11), (11, 12)),  # middle finger
    *((9, 13), (13, 14), (14, 15), (15, 16)),  # ring finger
    *((13, 17), (17, 18), (18, 19), (19, 20), (0, 17)),  # little finger, palm edge
)
"""MediaPipe hand landmark pairs (21 points)."""
HAND_COLOURS = {"left_hand": (0, 255, 255), "right_hand": (255, 0, 255)}
FACE_COLOUR = (255, 255, 255)
FACE_POINTS = 468
"""Face-mesh points drawn as dots (the irises, points 468-477, are left out)."""
_SUBPIXEL_BITS = 4


def draw_skeleton(frame: dict[str, np.ndarray | None], size: int) -> np.ndarray:
    """One frame of landmarks (part -> (N, 3) pixel points or None, as
    ``LandmarkSequence.frame(i)``) drawn on black -> (size, size, 3) uint8 RGB."""
    image = np.zeros((size, size, 3), np.uint8)
    width = max(1, round(size / REFERENCE_SIZE))
    scale = 1 << _SUBPIXEL_BITS

    def point(p: np.ndarray) -> tuple[int, int]:
        return int(round(float(p[0]) * scale)), int(round(float(p[1]) * scale))

    def line(a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
        if np.isfinite(a[:2]).all() and np.isfinite(b[:2]).all():
            cv2.line(image, point(a), point(b), colour, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)

    pose = frame.get("pose")
    if pose is not None:
        for (a, b), colour in BODY_LINES.items():
            line(pose[a], pose[b], colour, 2 * width)
    for part, colour in HAND_COLOURS.items():
        hand = frame.get(part)
        if hand is not None:
            for a, b in HAND_BONES:
                line(hand[a], hand[b], colour, width)
    face = frame.get("face")
    if face is not None:
        xy = face[:FACE_POINTS, :2]
        xy = xy[np.isfinite(xy).all(1)].astype(np.int64)  # floor: the pixel a point lies in
        inside = ((xy >= 0) & (xy < size)).all(1)
        image[xy[inside, 1], xy[inside, 0]] = FACE_COLOUR
    return image
