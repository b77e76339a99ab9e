"""The chest around the nodules (SYNTHETIC_COHORT.md, "The chest around it").

``sample_phantom`` draws a body, two lungs, the mediastinum, the spine and a vessel tree per
lung; ``render_phantom`` draws them in HU on any region of a grid, with a partial-volume ramp
at every edge; ``place_nodule`` finds a nodule centre deep enough inside a lung.

Interpretation of the text, written down once: "40 +/- 10" and "-850 +/- 20" are uniform
draws per study; a lung's left-right semi-axis is 0.40 * (a - w/2) (the body's half-width less
half the mediastinum) with its medial edge on the mediastinum; a lung too large for the body is
shrunk (about its medial edge) until it stays 5 mm inside the fat layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.synthetic.geometry import (
    Grid,
    IndexBox,
    Vec3,
    blend,
    ellipsoid_depth,
    ellipsoid_wall_distance,
    intersect,
    ramp_edge,
    random_unit_vector,
    segment_distance,
)

AIR_HU = -1000.0
FAT_HU = -100.0
MEDIASTINUM_HU = 40.0
VESSEL_HU = 40.0
HILUM_RADIUS_MM = 4.0
NODULE_WALL_MARGIN_MM = 3.0  #: a nodule centre lies >= D/2 + 3 mm from its lung's wall
NODULE_GAP_MM = 5.0  #: between the base spheres of two nodules of one study
SCAN_MARGIN_MM = 15.0  #: scan range beyond the lungs' apices and bases


@dataclass(frozen=True)
class Lung:
    centre: Vec3
    semi_axes: Vec3  #: (left-right, anterior-posterior, cranio-caudal) in mm


@dataclass(frozen=True)
class Vessel:
    """One straight vessel segment (a capsule) of density 40."""

    start: Vec3
    end: Vec3
    radius_mm: float
    generation: int


@dataclass(frozen=True)
class ChestPhantom:
    """Every drawn quantity of the chest of one study, in LPS mm and HU."""

    body_semi_axes: tuple[float, float]  #: a (left-right), b (anterior-posterior)
    fat_mm: float
    soft_tissue_hu: float
    mediastinum_width_mm: float
    spine_radius_mm: float
    spine_centre_y_mm: float
    spine_hu: float
    parenchyma_hu: float
    lungs: tuple[Lung, Lung]
    vessels: tuple[Vessel, ...]

    @property
    def z_half_extent_mm(self) -> float:
        """Half the scan range: the lungs' cranio-caudal reach plus a margin."""
        return max(lung.semi_axes[2] for lung in self.lungs) + SCAN_MARGIN_MM

    def summary(self) -> dict[str, float | int]:
        """The drawn quantities that describe a study's anatomy in its ground truth."""
        return {
            "body_a_mm": self.body_semi_axes[0], "body_b_mm": self.body_semi_axes[1],
            "fat_mm": self.fat_mm, "soft_tissue_hu": self.soft_tissue_hu,
            "mediastinum_width_mm": self.mediastinum_width_mm,
            "spine_radius_mm": self.spine_radius_mm, "spine_hu": self.spine_hu,
            "parenchyma_hu": self.parenchyma_hu, "vessel_segments": len(self.vessels),
        }


def sample_phantom(rng: np.random.Generator) -> ChestPhantom:
    """Draw one chest: body, fat, spine, mediastinum, two lungs and their vessel trees."""
    a, b = float(rng.uniform(150, 190)), float(rng.uniform(100, 130))
    fat = float(rng.uniform(10, 25))
    soft = float(rng.uniform(30, 50))
    width = float(rng.uniform(60, 90))
    spine_r = float(rng.uniform(15, 20))
    spine_hu = float(rng.uniform(400, 700))
    parenchyma = float(rng.uniform(-870, -830))
    lungs = tuple(_lung(side, a, b, fat, width, float(rng.uniform(100, 130))) for side in (-1, 1))
    vessels: list[Vessel] = []
    for side, lung in zip((-1, 1), lungs, strict=True):
        vessels += _vessel_tree(lung, side, rng)
    return ChestPhantom(
        body_semi_axes=(a, b), fat_mm=fat, soft_tissue_hu=soft, mediastinum_width_mm=width,
        spine_radius_mm=spine_r, spine_centre_y_mm=b - fat - spine_r - 10.0, spine_hu=spine_hu,
        parenchyma_hu=parenchyma, lungs=lungs, vessels=tuple(vessels),  # type: ignore[arg-type]
    )


def _lung(side: int, a: float, b: float, fat: float, width: float, cc: float) -> Lung:
    """A lung on ``side`` (-1 right, +1 left in LPS) shrunk to stay 5 mm inside the fat."""
    inner_a, inner_b = a - fat - 5.0, b - fat - 5.0
    lr, ap = 0.40 * (a - width / 2), 0.80 * b
    t = np.linspace(0, 2 * math.pi, 360, endpoint=False)

    def fits(k: float) -> bool:
        x = width / 2 + k * lr * (1 + np.cos(t))
        y = k * ap * np.sin(t)
        return bool(np.max((x / inner_a) ** 2 + (y / inner_b) ** 2) <= 1.0)

    scale = 1.0
    if not fits(1.0):
        lo, hi = 0.0, 1.0
        for _ in range(16):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        scale = lo
    lr, ap = scale * lr, scale * ap
    return Lung(centre=(side * (width / 2 + lr), 0.0, 0.0), semi_axes=(lr, ap, cc))


def _wall_distance_along(lung: Lung, point: Vec3, u: Vec3) -> float:
    """How far the ray point + t u (t > 0) runs inside the lung."""
    q = [(p - c) / s for p, c, s in zip(point, lung.centre, lung.semi_axes, strict=True)]
    v = [ui / s for ui, s in zip(u, lung.semi_axes, strict=True)]
    qa = sum(vi * vi for vi in v)
    qb = 2 * sum(qi * vi for qi, vi in zip(q, v, strict=True))
    qc = sum(qi * qi for qi in q) - 1.0
    return max(0.0, (-qb + math.sqrt(max(qb * qb - 4 * qa * qc, 0.0))) / (2 * qa))


def _unit(v: tuple[float, float, float] | list[float]) -> Vec3:
    n = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    return v[0] / n, v[1] / n, v[2] / n


def _turn(u: Vec3, rng: np.random.Generator) -> Vec3:
    """``u`` turned by 20-50 degrees about a random perpendicular axis (plain floats: the
    trees have dozens of segments and small numpy calls would dominate)."""
    v = rng.standard_normal(3).tolist()
    perp = _unit((u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]))
    angle = math.radians(float(rng.uniform(20, 50)))
    cos, sin = math.cos(angle), math.sin(angle)
    return _unit([a * cos + b * sin for a, b in zip(u, perp, strict=True)])


def _vessel_tree(lung: Lung, side: int, rng: np.random.Generator) -> list[Vessel]:
    """A tree grown from the hilum (the lung's medial centre) towards the periphery: 3-4
    generations, 2-3 children per branch, radius 4 mm halving per generation."""
    generations = int(rng.integers(3, 5))
    cx, cy, cz = lung.centre
    hilum: Vec3 = (cx - side * 0.8 * lung.semi_axes[0], cy, cz)
    wobble = random_unit_vector(rng)
    root = _unit([side + 0.6 * wobble[0], 0.6 * wobble[1], 0.6 * wobble[2]])
    vessels: list[Vessel] = []
    branches = [(hilum, root, float(rng.uniform(0.3, 0.5)))]
    for generation in range(generations):
        grown = []
        for start, u, fraction in branches:
            reach = _wall_distance_along(lung, start, u)
            if reach < 4.0:
                continue
            end = _as_vec([s + fraction * reach * ui for s, ui in zip(start, u, strict=True)])
            vessels.append(Vessel(start, end, HILUM_RADIUS_MM / 2**generation, generation))
            if generation + 1 < generations:
                grown += [(end, _turn(u, rng), float(rng.uniform(0.35, 0.6)))
                          for _ in range(int(rng.integers(2, 4)))]
        branches = grown
    return vessels


def _as_vec(v: np.ndarray | list[float]) -> Vec3:
    return float(v[0]), float(v[1]), float(v[2])


def render_phantom(grid: Grid, region: IndexBox, phantom: ChestPhantom) -> np.ndarray:
    """The chest in HU on ``region`` of ``grid`` (float32, shape of the region)."""
    edge = grid.edge_mm
    z, y, x = grid.coords(region)
    a, b = phantom.body_semi_axes
    zero = np.zeros(1, dtype=np.float32)
    plane = np.full((y.shape[1], x.shape[2]), AIR_HU, dtype=np.float32)
    y2, x2 = y[0], x[0]
    blend(plane, ramp_edge(ellipsoid_depth(zero, y2, x2, (a, b, 1.0)), edge), FAT_HU)
    fat = phantom.fat_mm
    inner = ramp_edge(ellipsoid_depth(zero, y2, x2, (a - fat, b - fat, 1.0)), edge)
    blend(plane, inner, phantom.soft_tissue_hu)
    half = np.float32(phantom.mediastinum_width_mm / 2)
    blend(plane, inner * ramp_edge(half - np.abs(x2), edge), MEDIASTINUM_HU)
    spine_y = y2 - np.float32(phantom.spine_centre_y_mm)
    spine = phantom.spine_radius_mm - np.sqrt(x2 * x2 + spine_y * spine_y)
    blend(plane, ramp_edge(spine, edge), phantom.spine_hu)
    field = np.empty((z.shape[0], *plane.shape), dtype=np.float32)
    field[:] = plane
    for lung in phantom.lungs:
        _draw_lung(field, grid, region, lung, phantom.parenchyma_hu)
    for vessel in phantom.vessels:
        _draw_vessel(field, grid, region, vessel)
    return field


def _draw_lung(field: np.ndarray, grid: Grid, region: IndexBox, lung: Lung, hu: float) -> None:
    """The lung ellipsoid with its partial-volume edge. Voxels with |1 - rho| beyond
    edge / (2 * shortest semi-axis) are fully in or out, so only the band between needs the
    depth along the ray."""
    edge = grid.edge_mm
    reach = np.asarray(lung.semi_axes) + edge
    hit = intersect(region, grid.bounds(np.subtract(lung.centre, reach).tolist(),
                                        np.add(lung.centre, reach).tolist()))
    if hit is None:
        return
    box, local = hit
    z, y, x = grid.coords(box)
    (a, b, c), (cx, cy, cz) = lung.semi_axes, lung.centre
    rho2 = ((x - np.float32(cx)) / np.float32(a)) ** 2 + ((y - np.float32(cy)) / np.float32(b)) ** 2
    rho2 = rho2 + ((z - np.float32(cz)) / np.float32(c)) ** 2
    slack = edge / (2 * min(lung.semi_axes))
    inner, outer = (1 - slack) ** 2, (1 + slack) ** 2
    coverage = (rho2 <= inner).astype(np.float32)
    band = (rho2 > inner) & (rho2 < outer)
    if band.any():
        dz, dy, dx = (np.broadcast_to(d, rho2.shape)[band]
                      for d in (z - np.float32(cz), y - np.float32(cy), x - np.float32(cx)))
        coverage[band] = ramp_edge(ellipsoid_depth(dz, dy, dx, lung.semi_axes), edge)
    blend(field[local], coverage, hu)


def _draw_vessel(field: np.ndarray, grid: Grid, region: IndexBox, vessel: Vessel) -> None:
    reach = vessel.radius_mm + grid.edge_mm
    low = [min(a, b) - reach for a, b in zip(vessel.start, vessel.end, strict=True)]
    high = [max(a, b) + reach for a, b in zip(vessel.start, vessel.end, strict=True)]
    hit = intersect(region, grid.bounds(low, high))
    if hit is None:
        return
    box, local = hit
    dist = segment_distance(*grid.coords(box), vessel.start, vessel.end)
    blend(field[local], ramp_edge(np.float32(vessel.radius_mm) - dist, grid.edge_mm), VESSEL_HU)


def place_nodule(
    phantom: ChestPhantom,
    diameter_mm: float,
    rng: np.random.Generator,
    others: list[tuple[Vec3, float]],
) -> Vec3:
    """A centre inside a lung at >= D/2 + 3 mm from its wall and clear of ``others``
    ((centre, D) of the nodules already placed). Raises ``ValueError`` if none is found."""
    need = diameter_mm / 2 + NODULE_WALL_MARGIN_MM
    for _ in range(5000):
        lung = phantom.lungs[int(rng.integers(2))]
        semi = np.asarray(lung.semi_axes)
        point = np.asarray(lung.centre) + semi * rng.uniform(-1, 1, 3)
        if ellipsoid_wall_distance(point, lung.centre, lung.semi_axes) < need:
            continue
        if all(
            np.linalg.norm(point - np.asarray(c)) >= (diameter_mm + d) / 2 + NODULE_GAP_MM
            for c, d in others
        ):
            return _as_vec(point)
    raise ValueError(f"no room for a nodule of D = {diameter_mm:.1f} mm in this chest")
