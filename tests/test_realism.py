"""The built-in swap looks real on hard faces: source texels judged and mirrored, the target's
lighting and occluders kept, nothing beyond the face moved (issue 8)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from swapline.blend.relight import fit_lighting, shading, sh_basis
from swapline.face import mesh_topology as topo
from swapline.face.mesh_mirror import MIRROR
from swapline.face.normals import FACE_TRIANGLES, triangle_normals, vertex_normals
from swapline.face.recognize import cosine
from swapline.swap.mesh import prepare_source
from swapline.swap.validity import prepare_texture, skin_patches

from .conftest import read

_OVAL = topo.as_array(topo.FACE_OVAL)


def _main(faces):  # noqa: ANN001, ANN202
    return max(faces, key=lambda f: f.area)


def _oval_mask(shape: tuple[int, int], mesh: np.ndarray, grow: float = 0.0) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(mesh[_OVAL, :2]).astype(np.int32)], 1)
    if grow > 0:
        k = int(round(grow))
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    return m.astype(bool)


@pytest.fixture(scope="module")
def frontal(session):  # noqa: ANN001, ANN201
    image = read("src_obama.jpg")
    return image, _main(session.analyse(image))


# --- geometry ---------------------------------------------------------------------------------

def test_mirror_pairs_are_a_symmetry_of_a_frontal_face(frontal) -> None:  # noqa: ANN001
    assert np.array_equal(MIRROR[MIRROR], np.arange(topo.N_POINTS))
    assert (MIRROR[[33, 133, 61, 234]] == [263, 362, 291, 454]).all()
    _, face = frontal
    mesh = face.mesh[:, :2].astype(np.float64)
    mid = mesh[MIRROR == np.arange(topo.N_POINTS)]
    x0 = np.median(mid[:, 0])  # the face's midline (the portrait is nearly frontal)
    mirrored = mesh.copy()
    mirrored[:, 0] = 2 * x0 - mirrored[:, 0]
    err = np.linalg.norm(mirrored[MIRROR] - mesh, axis=1)
    width = np.ptp(mesh[_OVAL, 0])
    assert np.median(err) < 0.03 * width
    shuffled = np.roll(MIRROR, 7)  # a wrong pairing is far off
    assert np.median(np.linalg.norm(mirrored[shuffled] - mesh, axis=1)) > 0.1 * width


def test_triangles_are_oriented_and_front_facing(frontal) -> None:  # noqa: ANN001
    edges: dict[tuple[int, int], int] = {}
    for a, b, c in FACE_TRIANGLES:
        for u, v in ((a, b), (b, c), (c, a)):
            edges[(int(u), int(v))] = edges.get((int(u), int(v)), 0) + 1
    assert max(edges.values()) == 1  # no directed edge twice: neighbours run opposite ways
    _, face = frontal
    tn = triangle_normals(face.mesh)
    assert (tn[:, 2] < 0).mean() > 0.95
    n = vertex_normals(face.mesh)
    assert n[1, 2] < -0.7  # nose tip faces the camera
    assert n[234, 0] < -0.7 and n[454, 0] > 0.7  # cheek extremes face sideways


# --- relighting -------------------------------------------------------------------------------

def test_sh_fit_recovers_a_known_lighting_on_a_rendered_mesh(frontal) -> None:  # noqa: ANN001
    """Render the face mesh's normals under a known SH light (and an albedo of 0.8 with 10 %
    outliers), fit, and compare the shading the fit predicts with the truth."""
    _, face = frontal
    rng = np.random.default_rng(1)
    n = vertex_normals(face.mesh)
    # dense samples: normals interpolated over the triangles
    w = rng.dirichlet([1, 1, 1], size=(len(FACE_TRIANGLES), 8))
    normals = np.einsum("tsk,tkd->tsd", w, n[FACE_TRIANGLES]).reshape(-1, 3)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    truth = np.array([[300, 350, 420], [-40, -30, -20], [-60, -70, -80], [90, 60, 40],
                      [5, 4, 3], [-8, -6, -4], [-20, -25, -30], [12, 8, 6], [-10, -8, -6]], np.float32)
    colors = 0.8 * (sh_basis(normals) @ truth)
    bad = rng.random(len(colors)) < 0.10
    colors[bad] *= 0.3  # hair-like outliers
    fit = fit_lighting(normals, colors)
    assert fit is not None
    pred, true = shading(normals, fit), 0.8 * shading(normals, truth)
    rel = np.abs(pred - true) / true.mean(0)  # error as a fraction of the mean shading
    assert np.median(rel) < 0.02 and np.percentile(rel, 95) < 0.06, (np.median(rel), np.percentile(rel, 95))


@pytest.fixture(scope="module")
def full_realism(session):  # noqa: ANN001, ANN201
    """A session with full relighting and the target's occluders kept (defaults are milder)."""
    from swapline.api import Session

    with Session(runtime=session.runtime, relight=1.0, keep_occluders=True) as s:
        yield s


def test_result_follows_a_shading_ramp_on_the_target(full_realism) -> None:  # noqa: ANN001
    """A target lit from one side: with ``relight=1`` the swapped face is brighter on that side
    by about as much."""
    session = full_realism
    target = read("src_biden.jpg").astype(np.float32)
    face = _main(session.analyse(target.astype(np.uint8)))
    x0, x1 = face.mesh[_OVAL, 0].min(), face.mesh[_OVAL, 0].max()
    ramp = np.clip(0.45 + 0.9 * (np.arange(target.shape[1]) - x0) / (x1 - x0), 0.2, 1.6).astype(np.float32)
    lit = np.clip(target * ramp[None, :, None], 0, 255).astype(np.uint8)
    source = session.load_source(read("src_obama.jpg"))
    out = session.swap(source, lit)
    tf = _main(session.analyse(lit))
    inner = _oval_mask(lit.shape[:2], tf.mesh) & skin_patches(lit.shape[:2], tf.mesh)

    def slope(img: np.ndarray) -> float:
        grey = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 8)
        ys, xs = np.nonzero(inner)
        return float(np.polyfit(xs, np.log(np.maximum(grey[ys, xs], 1.0)), 1)[0])

    s_target, s_out = slope(lit), slope(out.image)
    assert s_target > 0
    assert 0.75 * s_target <= s_out <= 1.25 * s_target, (s_target, s_out)


# --- source validity --------------------------------------------------------------------------

def test_painted_hair_and_background_in_the_source_stay_out(session) -> None:  # noqa: ANN001
    """A dark band over the source's forehead and a blue patch at its cheek outline: neither
    colour shows in the swapped target face, and identity still moves."""
    src = read("src_obama.jpg").copy()
    sf = _main(session.analyse(src))
    m = sf.mesh
    width = float(np.ptp(m[_OVAL, 0]))
    top, brow = float(m[10, 1]), float(m[[70, 63, 105, 66, 107, 336, 296, 334, 293, 300], 1].mean())
    band = np.zeros(src.shape[:2], bool)
    band[int(top - 0.05 * width):int(top + 0.45 * (brow - top)), :] = True
    band &= _oval_mask(src.shape[:2], m, grow=0.1 * width)
    src[band] = (20, 20, 25)  # dark hair
    cx, cy = m[234, :2]  # the cheek's outline point (image left)
    cv2.circle(src, (int(cx + 0.04 * width), int(cy)), int(0.07 * width), (200, 60, 20), -1)  # blue
    source = session.load_source(src)
    target = read("src_biden.jpg")
    out = session.swap(source, target)
    tf = _main(session.analyse(target))
    face = _oval_mask(target.shape[:2], tf.mesh)
    clean = session.load_source(read("src_obama.jpg"))
    reference = session.swap(clean, target)  # the same swap from the clean photo

    def colours(img: np.ndarray) -> tuple[float, float]:
        pix = img[face].astype(np.int32)
        return (pix.max(1) < 45).mean(), ((pix[:, 0] > 120) & (pix[:, 0] > pix[:, 2] + 60)).mean()

    (dark, blue), (dark0, blue0) = colours(out.image), colours(reference.image)
    assert dark <= dark0 + 0.002 and blue <= blue0 + 0.002, (dark, dark0, blue, blue0)
    of = _main(session.analyse(out.image))
    margin = cosine(of.embedding, clean.embedding) - cosine(of.embedding, tf.embedding)
    assert margin >= 0.10


def test_mirror_completion_fills_a_hidden_half(frontal) -> None:  # noqa: ANN001
    """Half the source face covered by a flat grey: the filled texture there correlates with the
    visible half, mirrored."""
    image, face = frontal
    src = prepare_source(image, face)
    crop, mesh = src.levels[0].copy(), src.mesh
    h, w = crop.shape[:2]
    mid = float(np.median(mesh[MIRROR == np.arange(topo.N_POINTS), 0]))
    covered = np.zeros((h, w), bool)
    covered[:, int(mid + 0.06 * src.width):] = True  # the image's right half, past the nose
    hidden = crop.copy()
    hidden[covered] = (128, 128, 128)
    prep = prepare_texture(hidden, mesh, exclude=covered)
    inside = prepare_texture(crop, mesh).validity > 0.9
    area = covered & inside & ~skin_patches((h, w), mesh)
    # where the mirrored texel is visible, the fill should look like the original there
    grey_f = cv2.cvtColor(prep.filled, cv2.COLOR_BGR2GRAY).astype(np.float32)
    grey_o = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    assert area.sum() > 500
    changed = np.abs(grey_f[area] - 128).mean()
    assert changed > 10  # the grey was replaced
    corr = np.corrcoef(grey_f[area], grey_o[area])[0, 1]
    assert corr > 0.5, corr
    assert prep.validity[area].mean() > 0.5


# --- target occluders and the background -------------------------------------------------------

@pytest.mark.parametrize("target_name", ["hard_painting_child.jpg", "hard_curls_glasses.jpg"])
def test_target_fringe_stays_in_front(full_realism, target_name: str) -> None:  # noqa: ANN001
    """Hair over the target's forehead (dark, not skin, inside the face outline) is unchanged."""
    session = full_realism
    target = read(target_name)
    tf = _main(session.analyse(target))
    width = float(np.ptp(tf.mesh[_OVAL, 0]))
    face = _oval_mask(target.shape[:2], tf.mesh)
    skin = skin_patches(target.shape[:2], tf.mesh)
    lum = cv2.cvtColor(target, cv2.COLOR_BGR2GRAY).astype(np.float32)
    skin_lum = np.median(lum[skin])
    brow = float(tf.mesh[[70, 63, 105, 66, 107, 336, 296, 334, 293, 300], 1].mean())
    ys = np.arange(target.shape[0])[:, None]
    hair = face & (lum < 0.5 * skin_lum) & (ys < brow - 0.05 * width)
    hair = cv2.erode(hair.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # its body, not its edge
    assert hair.sum() > 200, "the test photo should show a fringe inside the face outline"
    out = session.swap(session.load_source(read("src_obama.jpg")), target).image
    diff = np.abs(out.astype(np.int32) - target.astype(np.int32)).max(2)[hair]
    assert (diff <= 2).mean() > 0.9, (diff <= 2).mean()


@pytest.mark.parametrize("blend", ["alpha", "multiband"])
def test_nothing_beyond_the_face_moves(session, blend: str) -> None:  # noqa: ANN001
    """Pixels farther than a quarter of the face width outside the face are bit-identical."""
    from swapline.api import Session
    from swapline.config import RuntimeConfig

    target = read("id_biden2.jpg")
    with Session(runtime=RuntimeConfig(home=session.runtime.home), blend=blend) as s:
        out = s.swap(s.load_source(read("hard_curls_glasses.jpg")), target).image
        tf = _main(s.analyse(target))
    width = float(np.ptp(tf.mesh[_OVAL, 0]))
    beyond = ~_oval_mask(target.shape[:2], tf.mesh, grow=0.25 * width)
    assert np.array_equal(out[beyond], target[beyond])


def test_a_black_and_white_target_stays_black_and_white(session) -> None:  # noqa: ANN001
    """The source's colour does not come into a grey photo (nor a sepia one's tint change)."""
    target = read("hard_cameraman_profile_gray.png")
    out = session.swap(session.load_source(read("src_obama.jpg")), target).image
    assert not np.array_equal(out, target)  # swapped
    assert np.abs(out.astype(np.int32) - out[..., [1, 1, 1]].astype(np.int32)).max() <= 1
    grey = cv2.cvtColor(read("src_biden.jpg"), cv2.COLOR_BGR2GRAY).astype(np.float32)
    sepia = np.clip(grey[..., None] * np.array([0.80, 0.92, 1.0], np.float32), 0, 255).astype(np.uint8)
    out = session.swap(session.load_source(read("src_obama.jpg")), sepia).image
    face = _oval_mask(sepia.shape[:2], _main(session.analyse(sepia)).mesh)
    changed = face & (np.abs(out.astype(np.int32) - sepia).max(2) > 8)
    assert changed.sum() > 1000
    # the result's chroma is the sepia's at the same luminance
    ycc_o = cv2.cvtColor(out, cv2.COLOR_BGR2YCrCb).astype(np.float64)[changed]
    ycc_t = cv2.cvtColor(sepia, cv2.COLOR_BGR2YCrCb).astype(np.float64)[face]
    for c in (1, 2):
        curve = np.polyfit(ycc_t[:, 0], ycc_t[:, c], 2)
        assert np.abs(np.polyval(curve, ycc_o[:, 0]) - ycc_o[:, c]).mean() < 1.5, c
