"""The imaging of one synthetic nodule, derived from its pathology (SYNTHETIC_COHORT.md,
"Imaging of one nodule"), and its rendering onto a voxel grid.

``sample_shape`` turns a ``NodulePathology`` into a ``NoduleShape`` -- every random draw of the
nodule's appearance, in mm and HU relative to its centre -- and ``render_nodule`` draws that
shape over whatever the grid already holds, touching only the voxels of the nodule's own
bounding box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.pathology import Invasiveness, Pattern
from training.synthetic import harmonics
from training.synthetic.geometry import (
    Grid,
    IndexBox,
    Vec3,
    blend,
    intersect,
    line_distance,
    random_in_ball,
    random_unit_vector,
    segment_distance,
    soft_edge,
)
from training.synthetic.pathology import NodulePathology

EDGE_MM = 0.3  #: s, the width of every nodule part's logistic edge
DIAMETER_RANGES: dict[Invasiveness, tuple[float, float]] = {
    Invasiveness.AIS: (5.0, 15.0),
    Invasiveness.MIA: (7.0, 20.0),
    Invasiveness.IAC: (10.0, 30.0),
}
MIA_CORE_RANGE = (1.5, 5.0)
IAC_MIN_CORE_MM = 5.5
SHELL_HU_RANGE = (-700.0, -500.0)
CORE_HU_RANGE = (0.0, 60.0)
SPIKE_HU_WITHOUT_CORE = -100.0
LUCENCY_HU = -900.0  #: bubbles and the air bronchogram


@dataclass(frozen=True)
class Spike:
    """A straight spike leaving the core (or shell) surface along ``direction``."""

    direction: Vec3
    length_mm: float
    diameter_mm: float


@dataclass(frozen=True)
class Bubble:
    """A round lucency; ``offset_mm`` from the nodule centre."""

    offset_mm: Vec3
    diameter_mm: float


@dataclass(frozen=True)
class Bronchogram:
    """An air-filled tube crossing the nodule through ``point_mm`` (offset from the centre)."""

    point_mm: Vec3
    direction: Vec3
    diameter_mm: float


@dataclass(frozen=True)
class NoduleShape:
    """Every drawn quantity of one nodule's appearance; positions are offsets from its centre.

    Attributes:
        diameter_mm: D, the diameter of the ground-glass shell's base sphere.
        core_diameter_mm: d_s, the solid core's base diameter (0: no core).
        lobulation: a, the relative amplitude of the radius modulation.
        harmonics: coefficients of the degree 2-4 real harmonics, scaled to max |Y| = 1.
    """

    diameter_mm: float
    core_diameter_mm: float
    shell_hu: float
    core_hu: float
    core_offset_mm: Vec3
    lobulation: float
    harmonics: tuple[float, ...]
    spikes: tuple[Spike, ...]
    spike_hu: float
    bubbles: tuple[Bubble, ...]
    bronchogram: Bronchogram | None

    def __post_init__(self) -> None:
        if not self.diameter_mm > 0:
            raise ValueError(f'Argument "diameter_mm" must be > 0, got {self.diameter_mm}.')
        if not 0 <= self.core_diameter_mm <= self.diameter_mm:
            raise ValueError(
                f'Argument "core_diameter_mm" must lie in [0, D], got {self.core_diameter_mm}.'
            )

    def modulation(self, u: np.ndarray) -> float:
        """1 + a * Y(u) for one unit direction."""
        if self.lobulation == 0:
            return 1.0
        y = harmonics.value_at(self.harmonics, (float(u[0]), float(u[1]), float(u[2])))
        return 1.0 + self.lobulation * y

    def spike_start(self, spike: Spike) -> np.ndarray:
        """Where a spike leaves the core surface (the shell's without a core)."""
        u = np.asarray(spike.direction)
        if self.core_diameter_mm > 0:
            radius = self.core_diameter_mm / 2 * self.modulation(u)
            return np.asarray(self.core_offset_mm) + radius * u
        return self.diameter_mm / 2 * self.modulation(u) * u

    @property
    def extent_mm(self) -> float:
        """A radius around the centre beyond which the nodule leaves the background as is."""
        reach = self.diameter_mm / 2 * (1 + self.lobulation)
        for spike in self.spikes:
            end = self.spike_start(spike) + spike.length_mm * np.asarray(spike.direction)
            reach = max(reach, float(np.linalg.norm(end)) + spike.diameter_mm / 2)
        return reach + 12 * EDGE_MM


def sample_shape(
    pathology: NodulePathology, rng: np.random.Generator, diameter_mm: float | None = None
) -> NoduleShape:
    """Draw the nodule's appearance from its pathology; ``diameter_mm`` forces D (tests)."""
    drawn_d = rng.uniform(*DIAMETER_RANGES[pathology.invasiveness])
    d = float(drawn_d if diameter_mm is None else diameter_mm)
    lepidic = pathology.percent(Pattern.LEPIDIC)
    if pathology.invasiveness is Invasiveness.AIS:
        d_s = 0.0
    elif pathology.invasiveness is Invasiveness.MIA:
        d_s = min(float(rng.uniform(*MIA_CORE_RANGE)), d)
    else:
        d_s = min(max(IAC_MIN_CORE_MM, d * (1 - lepidic / 100)), d)
    shell_hu = float(rng.uniform(*SHELL_HU_RANGE))
    core_hu = float(rng.uniform(*CORE_HU_RANGE))
    core_offset = (
        random_in_ball(rng, min(0.15 * d, (d - d_s) / 2)) if d_s > 0 else np.zeros(3)
    )
    lobulation = 0.15 * pathology.percent(Pattern.ACINAR, Pattern.PAPILLARY) / 100
    coefficients = harmonics.random_lobulation(rng)
    base = NoduleShape(
        diameter_mm=d, core_diameter_mm=d_s, shell_hu=shell_hu, core_hu=core_hu,
        core_offset_mm=_vec(core_offset), lobulation=lobulation,
        harmonics=tuple(float(c) for c in coefficients), spikes=(),
        spike_hu=core_hu if d_s > 0 else SPIKE_HU_WITHOUT_CORE, bubbles=(), bronchogram=None,
    )
    return NoduleShape(
        **{
            **base.__dict__,
            "spikes": _sample_spikes(pathology, d, rng),
            "bubbles": _sample_bubbles(pathology, base, rng),
            "bronchogram": _sample_bronchogram(pathology, d, rng),
        }
    )


def _vec(v: np.ndarray) -> Vec3:
    return float(v[0]), float(v[1]), float(v[2])


def _sample_spikes(
    pathology: NodulePathology, d: float, rng: np.random.Generator
) -> tuple[Spike, ...]:
    spiculation = pathology.percent(Pattern.MICROPAPILLARY, Pattern.SOLID) / 100
    if spiculation == 0:
        return ()
    count = int(rng.integers(6, 15))
    return tuple(
        Spike(_vec(random_unit_vector(rng)), 0.35 * d * spiculation, float(rng.uniform(0.6, 1.0)))
        for _ in range(count)
    )


def _sample_bubbles(
    pathology: NodulePathology, shape: NoduleShape, rng: np.random.Generator
) -> tuple[Bubble, ...]:
    count = round(8 * pathology.percent(Pattern.CRIBRIFORM, Pattern.COMPLEX_GLANDULAR) / 100)
    has_core = shape.core_diameter_mm > 0
    host_centre = np.asarray(shape.core_offset_mm) if has_core else np.zeros(3)
    host_d = shape.core_diameter_mm if has_core else shape.diameter_mm
    bubbles = []
    for _ in range(count):
        diameter = float(rng.uniform(1.0, 2.0))
        u = random_unit_vector(rng)
        room = max(0.0, host_d / 2 * shape.modulation(u) - diameter / 2)
        offset = host_centre + u * room * float(rng.random()) ** (1 / 3)
        bubbles.append(Bubble(_vec(offset), diameter))
    return tuple(bubbles)


def _sample_bronchogram(
    pathology: NodulePathology, d: float, rng: np.random.Generator
) -> Bronchogram | None:
    if rng.random() >= pathology.percent(Pattern.PAPILLARY) / 100:
        return None
    point = random_in_ball(rng, d / 4)
    return Bronchogram(_vec(point), _vec(random_unit_vector(rng)), float(rng.uniform(1.0, 1.5)))


def _radius(shape: NoduleShape, base_diameter: float, dz: np.ndarray, dy: np.ndarray,
            dx: np.ndarray, r: np.ndarray) -> np.ndarray | float:
    """R(theta, phi) of a blob of ``base_diameter`` at the directions of (dx, dy, dz).

    Only voxels within a*R + 12 s of the base sphere need the modulation: elsewhere the edge
    is saturated (0 or 1 to within e^-12) whatever R is, so they keep the base radius.
    """
    base = base_diameter / 2
    if shape.lobulation == 0:
        return base
    band = np.abs(r - np.float32(base)) < shape.lobulation * base + 12 * EDGE_MM
    inv = 1 / np.maximum(r[band], np.float32(1e-6))
    ux, uy, uz = (np.broadcast_to(d, r.shape)[band] * inv for d in (dx, dy, dz))
    y = harmonics.combine(np.asarray(shape.harmonics), ux, uy, uz)
    radius = np.full(r.shape, base, dtype=np.float32)
    radius[band] = np.float32(base) * (1 + np.float32(shape.lobulation) * y)
    return radius


def _sub(z: np.ndarray, y: np.ndarray, x: np.ndarray, low: np.ndarray, high: np.ndarray
         ) -> tuple[slice, slice, slice]:
    """Slices of the (sorted) coordinate axes that fall within [low, high] (x, y, z order)."""
    axes = ((z, low[2], high[2]), (y, low[1], high[1]), (x, low[0], high[0]))
    return tuple(  # type: ignore[return-value]
        slice(int(np.searchsorted(a.ravel(), lo)), int(np.searchsorted(a.ravel(), hi, "right")))
        for a, lo, hi in axes
    )


def nodule_layers(
    shape: NoduleShape, dz: np.ndarray, dy: np.ndarray, dx: np.ndarray
) -> list[tuple[tuple[slice, slice, slice], np.ndarray, float]]:
    """The nodule's parts in drawing order, as (where, opacity, HU) over the offset grid
    (dz, dy, dx) from its centre: shell, core, spikes, bubbles, air bronchogram."""
    full = (slice(None), slice(None), slice(None))
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    shell = soft_edge(_radius(shape, shape.diameter_mm, dz, dy, dx, r) - r, EDGE_MM)
    layers = [(full, shell, shape.shell_hu)]
    if shape.core_diameter_mm > 0:
        cx, cy, cz = (np.float32(c) for c in shape.core_offset_mm)
        qx, qy, qz = dx - cx, dy - cy, dz - cz
        rc = np.sqrt(qx * qx + qy * qy + qz * qz)
        core_r = _radius(shape, shape.core_diameter_mm, qz, qy, qx, rc)
        layers.append((full, soft_edge(core_r - rc, EDGE_MM), shape.core_hu))
    for spike in shape.spikes:
        start = shape.spike_start(spike)
        end = start + spike.length_mm * np.asarray(spike.direction)
        margin = spike.diameter_mm / 2 + 12 * EDGE_MM
        where = _sub(dz, dy, dx, np.minimum(start, end) - margin, np.maximum(start, end) + margin)
        dist = segment_distance(
            dz[where[0]], dy[:, where[1]], dx[..., where[2]], _vec(start), _vec(end)
        )
        layers.append((where, soft_edge(spike.diameter_mm / 2 - dist, EDGE_MM), shape.spike_hu))
    for bubble in shape.bubbles:
        c = np.asarray(bubble.offset_mm)
        margin = bubble.diameter_mm / 2 + 12 * EDGE_MM
        where = _sub(dz, dy, dx, c - margin, c + margin)
        dist = segment_distance(dz[where[0]], dy[:, where[1]], dx[..., where[2]], bubble.offset_mm,
                                bubble.offset_mm)
        layers.append((where, soft_edge(bubble.diameter_mm / 2 - dist, EDGE_MM), LUCENCY_HU))
    if shape.bronchogram is not None:
        tube = shape.bronchogram
        dist = line_distance(dz, dy, dx, tube.point_mm, tube.direction)
        layers.append((full, soft_edge(tube.diameter_mm / 2 - dist, EDGE_MM) * shell, LUCENCY_HU))
    return layers


def nodule_box(grid: Grid, centre: Vec3, shape: NoduleShape) -> IndexBox:
    """The index box outside which the nodule changes nothing."""
    reach = shape.extent_mm
    return grid.bounds([c - reach for c in centre], [c + reach for c in centre])


def _offsets(grid: Grid, box: IndexBox, centre: Vec3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, y, x = grid.coords(box)
    return z - np.float32(centre[2]), y - np.float32(centre[1]), x - np.float32(centre[0])


def render_nodule(field: np.ndarray, grid: Grid, region: IndexBox, centre: Vec3,
                  shape: NoduleShape) -> None:
    """Draw the nodule over ``field``, the array of ``region`` of ``grid``, in place."""
    hit = intersect(region, nodule_box(grid, centre, shape))
    if hit is None:
        return
    box, local = hit
    target = field[local]
    for where, weight, hu in nodule_layers(shape, *_offsets(grid, box, centre)):
        blend(target[where], weight, hu)


def rendered_volume_mm3(
    grid: Grid, centre: Vec3, shape: NoduleShape, background_hu: float
) -> float:
    """The rendered volume: voxels where the nodule, drawn over a uniform ``background_hu``
    without blur or noise, lies above half the shell's contrast."""
    box = nodule_box(grid, centre, shape)
    field = np.full(tuple(hi - lo for lo, hi in box), background_hu, dtype=np.float32)
    render_nodule(field, grid, box, centre, shape)
    threshold = background_hu + 0.5 * (shape.shell_hu - background_hu)
    return float(np.count_nonzero(field > threshold)) * grid.voxel_volume_mm3


def volume_equivalent_diameter(volume_mm3: float) -> float:
    """The diameter of the sphere of this volume."""
    return (6 * volume_mm3 / math.pi) ** (1 / 3)
