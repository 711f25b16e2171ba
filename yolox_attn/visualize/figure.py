"""The attention picture: the detections beside one heat-map panel per attended level, each with
its title and a colour scale labelled with the map's values."""

from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .attention_maps import AttentionMap

ImagePoint = Tuple[float, float]  # (x, y) in input-image pixels


def map_in_image(grid_map: np.ndarray, info: Dict, test_size: Tuple[int, int]) -> np.ndarray:
    """A feature-grid map -> the input image's (H, W), through the letterbox, values kept.

    The grid covers the padded ``test_size`` canvas; only the part the image occupies is kept,
    so padding cannot set the colour range.
    """
    canvas = cv2.resize(grid_map.astype(np.float32), (test_size[1], test_size[0]), interpolation=cv2.INTER_LINEAR)
    # preproc pastes the resized image at the top-left with int() sizes
    h_in = max(1, int(info["height"] * info["ratio"]))
    w_in = max(1, int(info["width"] * info["ratio"]))
    return cv2.resize(canvas[:h_in, :w_in], (info["width"], info["height"]), interpolation=cv2.INTER_LINEAR)


def heat_panel(img: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``heat`` in [0, 1] as JET colours blended over ``img`` (BGR uint8, same H, W)."""
    colours = cv2.applyColorMap(np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(img, 1.0 - alpha, colours, alpha, 0.0)


def scale_labels(*values: float) -> Tuple[str, ...]:
    """``values`` with 3 significant digits, or as many more (up to 6) as it takes to print no two
    alike: a colour scale whose ends both read 0.252 tells nothing. A non-flat map's ends (see
    ``attention_maps.FLAT_RANGE``) differ within 5 digits."""
    for digits in range(3, 7):
        labels = tuple(f"{v:.{digits}g}" for v in values)
        if len(set(labels)) == len(labels):
            break
    return labels


def flat_note(heat: np.ndarray, value_range: Optional[Tuple[float, float]] = None) -> str:
    """The title line of a flat map (one ``normalize_map`` left all 0): its value where its range
    (min, max) is known; '' for any other map."""
    if heat.any():
        return ""
    if value_range is None:
        return "flat: no spatial variation"
    low, high = value_range
    return f"flat: {(low + high) / 2:#.4g} (max - min = {high - low:.1g})"


def colour_bar(panel: np.ndarray, low: float, high: float) -> np.ndarray:
    """Draw the JET scale at the panel's right edge, labelled with the map values of its ends; in place.

    The heat map is min-max scaled per panel, so blue is the map's ``low`` and red its ``high``.
    """
    font = cv2.FONT_HERSHEY_SIMPLEX
    h, w = panel.shape[:2]
    scale = float(np.clip(w / 600.0, 0.28, 0.6))
    bar_w = max(4, w // 30)
    top, bottom = h // 4, h - max(4, h // 20)
    if bottom - top < 8 or w < 4 * bar_w:
        return panel  # too small to be read
    ramp = np.linspace(255, 0, bottom - top).astype(np.uint8)[:, None].repeat(bar_w, axis=1)
    x0 = w - bar_w - 2
    panel[top:bottom, x0:x0 + bar_w] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)
    line_h = cv2.getTextSize("Ag", font, scale, 1)[0][1]
    for text, y in zip(scale_labels(high, low), (top + line_h, bottom)):
        tw = cv2.getTextSize(text, font, scale, 1)[0][0]
        org = (max(0, x0 - tw - 3), y)
        cv2.putText(panel, text, org, font, scale, (0, 0, 0), 3, cv2.LINE_AA)  # outline: readable on any colour
        cv2.putText(panel, text, org, font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def _wrap(text: str, font: int, scale: float, max_width: int) -> List[str]:
    lines: List[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, font, scale, 1)[0][0] <= max_width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines


def put_title(panel: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Write ``lines`` (word-wrapped) at the panel's top on a darkened strip; in place."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    w = panel.shape[1]
    scale = float(np.clip(w / 600.0, 0.28, 0.6))  # readable on 100 px panels and 1000 px ones
    wrapped = [part for line in lines if line for part in _wrap(line, font, scale, w - 4)]
    line_h = cv2.getTextSize("Ag", font, scale, 1)[0][1] + 4
    strip = min(panel.shape[0], line_h * len(wrapped) + 3)
    panel[:strip] = (panel[:strip].astype(np.float32) * 0.35).astype(np.uint8)
    for i, text in enumerate(wrapped):
        cv2.putText(panel, text, (2, line_h * (i + 1)), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def attention_figure(detections: np.ndarray, img: np.ndarray, maps: Dict[str, np.ndarray],
                     described: Dict[str, AttentionMap], point: ImagePoint, n_dets: int,
                     ranges: Optional[Dict[str, Tuple[float, float]]] = None) -> np.ndarray:
    """[detections | level 1 | level 2 | ...], each panel the input image's size; ``ranges`` (level ->
    the map's min and max in the image) labels each panel's colour scale, or gives a flat map's
    value in its title instead."""
    panels = [put_title(detections.copy(), [f"detections ({n_dets})"])]
    radius = max(2, min(img.shape[:2]) // 40)
    for level, heat in maps.items():
        info = described[level]
        panel = heat_panel(img, heat)
        if info.uses_pixel:
            centre = (int(round(point[0])), int(round(point[1])))
            cv2.circle(panel, centre, radius, (255, 255, 255), max(1, radius // 2))
        # A flat map (e.g. from the tiny features of an untrained backbone) is shown as one colour
        # with its value, not as float noise stretched over the scale.
        flat = flat_note(heat, None if ranges is None else ranges[level])
        if ranges is not None and not flat:
            colour_bar(panel, *ranges[level])
        panels.append(put_title(panel, [f"{level}: {info.kind}", info.note, flat]))
    return np.concatenate(panels, axis=1)
