"""The exact parity projection and the exact parity decisions, checked against cvxpy,
fairlearn, the optimality conditions and brute force."""

import contextlib
import itertools

import numpy as np
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference
from hypothesis import given, settings
from hypothesis import strategies as st

import sklearn_metaedit.fairness._decisions as decisions
import sklearn_metaedit.fairness._projection as projection
import sklearn_metaedit.fairness._projection_numpy as projection_numpy
from sklearn_metaedit.fairness import parity_decisions, project_parity, project_parity_cvxpy

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# The two implementations of project_parity on CPU tensors (CUDA runs the torch one).
BACKENDS = ["torch", "numpy"]
# (device, backend) pairs: every backend on the CPU, and CUDA where present.
WHERE = [("cpu", backend) for backend in BACKENDS] + [
    (device, "torch") for device in DEVICES if device != "cpu"
]


@contextlib.contextmanager
def _backend(name):
    previous = projection._BACKEND
    projection._BACKEND = name
    try:
        yield
    finally:
        projection._BACKEND = previous


def _instance(seed, n, n_groups, *, skew=0.15):
    """Scores in [0, 1] whose group means differ (group g is shifted by g * skew)."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    groups[:n_groups] = np.arange(n_groups)
    scores = np.clip(rng.random(n) * 0.8 + skew * groups, 0.0, 1.0)
    return scores, groups


def _spread_instance(seed, n, n_groups):
    """Scores spread over all of [0, 1] with different group means, so that projecting
    clips rows at both ends."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    groups[:n_groups] = np.arange(n_groups)
    powers = np.linspace(0.4, 2.5, n_groups)
    return rng.random(n) ** powers[groups], groups


def _group_means(z, groups):
    return np.array([z[groups == g].mean() for g in np.unique(groups[groups >= 0])])


def _gap(z, groups):
    means = _group_means(z, groups)
    return means.max() - means.min()


def _project(scores, groups, epsilon, device="cpu", dtype=torch.float64, backend="auto", **kwargs):
    with _backend(backend):
        z = project_parity(
            torch.as_tensor(scores, dtype=dtype, device=device),
            torch.as_tensor(groups, device=device),
            epsilon,
            **kwargs,
        )
    return z.detach().cpu().double().numpy()


@pytest.mark.parametrize(("device", "backend"), WHERE)
@pytest.mark.parametrize("n_groups", [2, 3, 5])
@pytest.mark.parametrize("epsilon", [0.0, 0.02, 0.1])
def test_projection_matches_cvxpy_reference_for_k_groups(device, backend, n_groups, epsilon):
    for seed in range(4):
        make = _instance if seed % 2 else _spread_instance
        scores, groups = make(seed, 60 + 50 * seed, n_groups)
        z = _project(scores, groups, epsilon, device, backend=backend)
        reference = project_parity_cvxpy(scores, groups, epsilon)
        assert np.abs(z - reference).max() <= 1e-6
        assert ((z - scores) ** 2).sum() <= ((reference - scores) ** 2).sum() + 1e-9
        assert _gap(z, groups) <= epsilon + 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_projection_matches_cvxpy_reference_on_ten_thousand_rows(backend):
    scores, groups = _instance(7, 10_000, 3, skew=0.1)
    z = _project(scores, groups, 0.03, backend=backend)
    reference = project_parity_cvxpy(scores, groups, 0.03)
    assert np.abs(z - reference).max() <= 1e-6
    assert ((z - scores) ** 2).sum() <= ((reference - scores) ** 2).sum() + 1e-9


def test_projection_of_a_known_instance():
    # Equal sizes: the band is centred, each group shifts by 0.3 and no row is clipped.
    z = _project([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.1)
    np.testing.assert_allclose(z, [0.6, 0.5, 0.5, 0.4], atol=1e-15)
    # Group 1 cannot rise by 0.9 without clipping: it saturates at one and group 0 comes down.
    z = _project([0.0, 0.0, 0.0, 1.0, 1.0, 0.8], [0, 0, 0, 1, 1, 1], 0.0)
    assert _gap(z, np.array([0, 0, 0, 1, 1, 1])) <= 1e-15
    np.testing.assert_allclose(
        z, project_parity_cvxpy([0, 0, 0, 1, 1, 0.8], [0, 0, 0, 1, 1, 1], 0)
    )


score_values = st.one_of(
    st.sampled_from([0.0, 1.0, 0.5, 0.25, 0.75, 0.1]),
    st.floats(0.0, 1.0, allow_nan=False),
)


@st.composite
def instances(draw, max_rows=24, min_rows=1):
    n_groups = draw(st.integers(1, 4))
    n = draw(st.integers(min_rows, max_rows))
    groups = np.array(draw(st.lists(st.integers(-1, n_groups - 1), min_size=n, max_size=n)))
    scores = np.array(draw(st.lists(score_values, min_size=n, max_size=n)))
    epsilon = draw(st.one_of(st.sampled_from([0.0, 0.05, 0.5, 1.0]), st.floats(0.0, 1.0)))
    return scores, groups, n_groups, epsilon


def _edge_epsilon(scores, groups, epsilon):
    """Move epsilon exactly onto a gap between two group means of the scores, sometimes."""
    means = _group_means(scores, groups) if (groups >= 0).any() else np.array([0.0])
    gaps = np.abs(means[:, None] - means[None, :]).ravel()
    return float(gaps.max()) if epsilon > 0.9 else epsilon


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=150, deadline=None)
@given(instances())
def test_projection_meets_gap_exactly_and_stays_in_the_box(backend, instance):
    scores, groups, n_groups, epsilon = instance
    epsilon = _edge_epsilon(scores, groups, epsilon)
    z = _project(scores, groups, epsilon, n_groups=n_groups, backend=backend)
    assert np.all((z >= 0) & (z <= 1))
    if (groups >= 0).any():
        assert _gap(z, groups) <= epsilon + 1e-12
    free = groups < 0
    np.testing.assert_array_equal(z[free], np.clip(scores[free], 0, 1))
    # Idempotence: a feasible point is its own projection.
    np.testing.assert_allclose(
        _project(z, groups, epsilon, n_groups=n_groups, backend=backend), z, atol=1e-12
    )


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None)
@given(instances(max_rows=16), st.randoms(use_true_random=False))
def test_projection_is_equivariant_to_permuting_rows(backend, instance, random):
    scores, groups, n_groups, epsilon = instance
    perm = np.array(random.sample(range(len(scores)), len(scores)))
    z = _project(scores, groups, epsilon, n_groups=n_groups, backend=backend)
    z_perm = _project(scores[perm], groups[perm], epsilon, n_groups=n_groups, backend=backend)
    np.testing.assert_allclose(z_perm, z[perm], atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None)
@given(instances(max_rows=16))
def test_projection_in_float32_meets_gap_to_float32_rounding(backend, instance):
    scores, groups, n_groups, epsilon = instance
    scores = scores.astype(np.float32).astype(np.float64)
    with _backend(backend):
        z32 = project_parity(
            torch.tensor(scores, dtype=torch.float32),
            torch.tensor(groups),
            epsilon,
            n_groups=n_groups,
        )
    assert z32.dtype == torch.float32
    z64 = _project(scores, groups, epsilon, n_groups=n_groups, backend=backend)
    np.testing.assert_allclose(z32.double().numpy(), z64, atol=1e-6)
    if (groups >= 0).any():
        assert _gap(z32.double().numpy(), groups) <= epsilon + 1e-6


HALF = {torch.float16: 2.0**-10 / 2, torch.bfloat16: 2.0**-7 / 2}


@pytest.mark.parametrize("dtype", list(HALF))
@pytest.mark.parametrize("backend", BACKENDS)
def test_half_precision_projection_meets_the_gap_in_its_own_dtype(dtype, backend):
    # Rounding the float64 solution to float16 / bfloat16 alone left gaps up to 2.5e-4 /
    # 1.8e-3 above epsilon; the group means of the values returned, computed exactly,
    # must differ by at most epsilon.
    rng = np.random.default_rng(0)
    worst = -1.0
    for trial in range(120):
        n, n_groups = int(rng.integers(4, 300)), int(rng.integers(2, 6))
        groups = rng.integers(0, n_groups, n)
        scores = rng.random(n) ** 2
        if trial % 4 == 0:
            scores = np.round(scores, 1)  # ties
        epsilon = [HALF[dtype] * 1.01, 0.01, 0.05][trial % 3]
        with _backend(backend):
            z = project_parity(torch.tensor(scores, dtype=dtype), torch.tensor(groups), epsilon)
        assert z.dtype == dtype
        values = z.double().numpy()
        assert np.all((values >= 0) & (values <= 1))
        worst = max(worst, _gap(values, groups) - epsilon)
    assert worst <= 0.0


@pytest.mark.parametrize("dtype", list(HALF))
def test_half_precision_projection_is_the_wide_one_where_rounding_keeps_the_gap(dtype):
    scores = torch.tensor([0.75, 0.5, 0.25, 0.0], dtype=dtype)
    groups = torch.tensor([0, 0, 1, 1])
    z = project_parity(scores, groups, 0.25)
    # the exact float64 projection is representable here: nothing is tightened
    np.testing.assert_array_equal(z.double().numpy(), [0.625, 0.375, 0.375, 0.125])


@pytest.mark.parametrize("dtype", list(HALF))
def test_half_precision_refuses_an_epsilon_its_rounding_could_break(dtype):
    scores = torch.tensor([0.9, 0.8, 0.2, 0.1], dtype=dtype)
    with pytest.raises(ValueError, match=r"epsilon=0.0 is below what torch\.(b?float16) can"):
        project_parity(scores, torch.tensor([0, 0, 1, 1]), 0.0)
    with pytest.raises(ValueError, match="Pass the scores as float32 or float64"):
        project_parity(scores, torch.tensor([0, 0, 1, 1]), HALF[dtype] / 2)


def _check_kkt(scores, groups, z, epsilon):
    """Optimality without a solver: each group is a clipped shift of its scores, the
    shifts balance (sum n_g nu_g = 0), and a group shifted up sits at the band's lower
    end, a group shifted down at its upper end."""
    means = _group_means(z, groups)
    lower = means.min()
    balance = 0.0
    for g in np.unique(groups[groups >= 0]):
        rows = groups == g
        s, zg = scores[rows], z[rows]
        inside = (zg > 1e-12) & (zg < 1 - 1e-12)
        assert inside.any(), "the instances keep at least one unclipped row per group"
        nu = (zg - s)[inside]
        assert np.ptp(nu) <= 1e-12
        nu = nu.mean()
        np.testing.assert_allclose(zg, np.clip(s + nu, 0, 1), atol=1e-12)
        balance += rows.sum() * nu
        if nu > 1e-12:
            assert abs(zg.mean() - lower) <= 1e-12
        elif nu < -1e-12:
            assert abs(zg.mean() - (lower + epsilon)) <= 1e-12
    assert abs(balance) <= 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_groups", [2, 3, 5])
@pytest.mark.parametrize("epsilon", [0.0, 0.01, 0.07])
def test_projection_meets_the_optimality_conditions(backend, n_groups, epsilon):
    for seed in range(4):
        make = _instance if seed % 2 else _spread_instance
        scores, groups = make(100 + seed, 300, n_groups)
        z = _project(scores, groups, epsilon, backend=backend)
        _check_kkt(scores, groups, z, epsilon)


def test_projection_clips_rows_when_a_group_must_move_far():
    scores, groups = _spread_instance(3, 400, 2)
    z = _project(scores, groups, 0.0)
    assert (z == 0).sum() > 0 and (z == 1).sum() > 0
    _check_kkt(scores, groups, z, 0.0)
    np.testing.assert_allclose(z, project_parity_cvxpy(scores, groups, 0.0), atol=1e-6)


def test_projection_leaves_a_feasible_input_unchanged():
    scores, groups = _instance(5, 200, 3, skew=0.0)
    epsilon = _gap(scores, groups) + 1e-9
    np.testing.assert_array_equal(_project(scores, groups, epsilon), scores)
    # A single group, or no constrained rows at all, is always feasible.
    np.testing.assert_array_equal(_project(scores, np.zeros(200, int), 0.0), scores)
    np.testing.assert_array_equal(
        _project(scores - 0.5, -np.ones(200, int), 0.0), np.clip(scores - 0.5, 0, 1)
    )


@pytest.mark.parametrize(
    ("scores", "groups", "epsilon"),
    [
        ([0.0, 0.0, 0.0, 0.0], [0, 0, 1, 1], 0.0),  # all at zero
        ([1.0, 1.0, 1.0], [0, 1, 2], 0.0),  # all at one, groups of one
        ([1.0, 0.0, 0.0, 0.0], [0, 1, 1, 1], 0.0),  # a group of one against the rest
        ([1.0, 1.0, 0.0, 0.0, 0.5], [0, 0, 1, 1, 2], 0.25),  # means 1, 0, 0.5
        ([0.7, 0.3, 0.5, 0.5], [0, 0, 1, 1], 0.0),  # equal means: already on the edge
        ([0.6, 0.6, 0.4, 0.4], [0, 0, 1, 1], 0.2),  # gap exactly epsilon
        ([0.6, 0.6, 0.4, 0.4], [0, 0, 1, 1], 0.1),  # half of it
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_projection_handles_degenerate_instances(backend, scores, groups, epsilon):
    scores, groups = np.array(scores), np.array(groups)
    z = _project(scores, groups, epsilon, backend=backend)
    reference = project_parity_cvxpy(scores, groups, epsilon)
    np.testing.assert_allclose(z, reference, atol=1e-6)
    assert _gap(z, groups) <= epsilon + 1e-12
    assert ((z - scores) ** 2).sum() <= ((reference - scores) ** 2).sum() + 1e-9


def test_projection_clips_out_of_range_scores_first():
    scores, groups = _instance(6, 80, 2, skew=0.3)
    raw = scores * 1.6 - 0.3
    np.testing.assert_allclose(
        _project(raw, groups, 0.02), _project(np.clip(raw, 0, 1), groups, 0.02), atol=0
    )


@pytest.mark.parametrize(("device", "backend"), WHERE)
@pytest.mark.parametrize("n_groups", [2, 3, 5])
@pytest.mark.parametrize("epsilon", [0.0, 0.04])
def test_projection_gradient_passes_gradcheck(device, backend, n_groups, epsilon):
    scores, groups = _spread_instance(11 * n_groups, 40, n_groups)
    s = torch.tensor(scores, device=device, requires_grad=True)
    g = torch.tensor(groups, device=device)
    with _backend(backend):
        z = project_parity(s, g, epsilon).detach().cpu().numpy()
        assert ((z > 0) & (z < 1)).sum() < len(z)  # some rows are clipped: a nontrivial Jacobian
        assert torch.autograd.gradcheck(
            lambda t: project_parity(t, g, epsilon), (s,), eps=1e-7, atol=1e-6
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_projection_jacobian_matches_finite_differences_of_cvxpy(backend):
    scores, groups = _instance(21, 14, 2, skew=0.45)
    epsilon = 0.05
    with _backend(backend):
        jacobian = torch.autograd.functional.jacobian(
            lambda t: project_parity(t, torch.tensor(groups), epsilon),
            torch.tensor(scores),
        ).numpy()
    h = 1e-4
    finite = np.empty_like(jacobian)
    for i in range(len(scores)):
        step = np.zeros_like(scores)
        step[i] = h
        up = project_parity_cvxpy(scores + step, groups, epsilon)
        down = project_parity_cvxpy(scores - step, groups, epsilon)
        finite[:, i] = (up - down) / (2 * h)
    assert np.abs(jacobian).max() > 0.1
    np.testing.assert_allclose(jacobian, finite, atol=1e-5)


@pytest.mark.parametrize(("device", "backend"), WHERE)
def test_batched_projection_equals_row_by_row(device, backend):
    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.random((5, 90)), device=device)
    groups = torch.tensor(rng.integers(-1, 3, (5, 90)), device=device)
    epsilons = 0.03
    with _backend(backend):
        batched = project_parity(scores, groups, epsilons, n_groups=3)
        for row in range(5):
            single = project_parity(scores[row], groups[row], epsilons, n_groups=3)
            torch.testing.assert_close(batched[row], single, atol=1e-14, rtol=0)
        shared = project_parity(scores, groups[0], epsilons, n_groups=3)
        for row in range(5):
            single = project_parity(scores[row], groups[0], epsilons, n_groups=3)
            torch.testing.assert_close(shared[row], single, atol=1e-14, rtol=0)
    assert batched.device == scores.device


@pytest.mark.parametrize(("device", "backend"), WHERE)
def test_projection_with_blocks_solves_each_block_with_its_own_band(device, backend):
    scores, groups = _instance(8, 150, 3, skew=0.2)
    blocks = np.random.default_rng(9).integers(0, 2, 150)
    z = _project(
        scores, groups, 0.02, device, blocks=torch.tensor(blocks, device=device), backend=backend
    )
    np.testing.assert_allclose(
        z, project_parity_cvxpy(scores, groups, 0.02, blocks=blocks), atol=1e-6
    )
    for b in (0, 1):
        alone = _project(scores, np.where(blocks == b, groups, -1), 0.02, device, backend=backend)
        np.testing.assert_allclose(z[blocks == b], alone[blocks == b], atol=1e-14)


def test_projection_ignores_groups_without_rows():
    scores, groups = _instance(12, 60, 2, skew=0.3)
    np.testing.assert_allclose(
        _project(scores, groups, 0.01, n_groups=6), _project(scores, groups, 0.01), atol=0
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": -0.1}, "epsilon"),
        ({"epsilon": float("nan")}, "epsilon"),
        ({"groups": torch.tensor([0, 1, -2])}, "-1"),
        ({"groups": torch.tensor([0, 1, 2]), "n_groups": 2}, "n_groups"),
        ({"groups": torch.tensor([0, 1])}, "shape"),
        ({"scores": torch.tensor([1, 0, 1])}, "floating"),
        ({"scores": torch.tensor([0.1, float("nan"), 0.4])}, "NaN"),
    ],
)
def test_projection_rejects_invalid_arguments(kwargs, message):
    arguments = {"scores": torch.tensor([0.2, 0.5, 0.9]), "groups": torch.tensor([0, 1, 1])}
    arguments["epsilon"] = 0.1
    arguments.update(kwargs)
    n_groups = arguments.pop("n_groups", None)
    with pytest.raises(ValueError, match=message):
        project_parity(
            arguments["scores"], arguments["groups"], arguments["epsilon"], n_groups=n_groups
        )
    with pytest.raises(ValueError, match=message):
        parity_decisions(
            arguments["scores"], arguments["groups"], arguments["epsilon"], n_groups=n_groups
        )


def _random_problem(rng, *, ties, max_rows=80):
    """A batch of random problems: groups of one, rows outside every group, scores at 0 and
    1 and outside [0, 1], up to 5 groups and 2 blocks, epsilon 0 among others; with
    ``ties``, scores on a 0.1 grid, so that many coincide."""
    batch, n, n_groups = rng.integers(1, 4), rng.integers(1, max_rows), rng.integers(1, 6)
    scores = rng.random((batch, n))
    if ties:
        scores = np.round(scores, 1)
    scores[rng.random((batch, n)) < 0.15] = 0.0
    scores[rng.random((batch, n)) < 0.15] = 1.0
    if rng.random() < 0.2:
        scores = scores * 1.4 - 0.2  # clipped to [0, 1] first, with no gradient there
    groups = rng.integers(-1, n_groups, (batch, n))
    groups[groups == n_groups - 1] = 0
    groups[:, 0] = n_groups - 1  # a group of one
    blocks = rng.integers(0, 2, (batch, n)) if rng.random() < 0.3 else None
    epsilon = float(rng.choice([0.0, 0.0, 0.01, 0.05, 0.3, rng.random()]))
    return scores, groups, int(n_groups), blocks, epsilon


def _solve(backend, scores, groups, n_groups, blocks, epsilon, direction):
    """The projection and the vector-Jacobian product with ``direction``."""
    s = torch.tensor(scores, requires_grad=True)
    with _backend(backend):
        z = project_parity(
            s,
            torch.tensor(groups),
            epsilon,
            n_groups=n_groups,
            blocks=None if blocks is None else torch.tensor(blocks),
        )
    (z * torch.tensor(direction)).sum().backward()
    return z.detach().numpy(), s.grad.numpy()


@pytest.mark.parametrize("ties", [False, True])
def test_numpy_and_torch_backends_agree_on_projection_and_gradient(ties):
    rng = np.random.default_rng(17 + ties)
    for trial in range(160):
        # Large problems take the numpy search's two-level route.
        problem = _random_problem(rng, ties=ties, max_rows=3000 if trial % 16 == 0 else 80)
        direction = rng.standard_normal(problem[0].shape)
        z_torch, grad_torch = _solve("torch", *problem, direction)
        z_numpy, grad_numpy = _solve("numpy", *problem, direction)
        np.testing.assert_allclose(z_numpy, z_torch, atol=1e-12, rtol=0)
        if not ties:
            # Away from ties both pick the same active set, so the same Jacobian. With
            # ties the projection can sit exactly where the active set changes, and each
            # backend may return a different one-sided derivative.
            np.testing.assert_allclose(grad_numpy, grad_torch, atol=1e-12, rtol=0)


def test_auto_backend_agrees_with_both_on_small_and_large_batches():
    rng = np.random.default_rng(5)
    for batch in (1, 80):
        scores = rng.random((batch, 60)) ** rng.uniform(0.3, 3, (batch, 1))
        groups = rng.integers(0, 3, (batch, 60))
        direction = rng.standard_normal((batch, 60))
        problem = (scores, groups, 3, None, 0.02)
        z_auto, grad_auto = _solve("auto", *problem, direction)
        for backend in BACKENDS:
            z, grad = _solve(backend, *problem, direction)
            np.testing.assert_allclose(z_auto, z, atol=1e-12, rtol=0)
            np.testing.assert_allclose(grad_auto, grad, atol=1e-12, rtol=0)


def test_numpy_search_does_not_depend_on_its_probe_levels(monkeypatch):
    monkeypatch.setattr(projection, "_BACKEND", "numpy")
    for seed, n in ((33, 3000), (34, 200)):
        scores, groups = _spread_instance(seed, n, 3)
        monkeypatch.setattr(projection_numpy, "_NUMPY_ONE_LEVEL", 0)  # coarse, then fine probes
        two_levels = _project(scores, groups, 0.01, backend="numpy")
        monkeypatch.setattr(projection_numpy, "_NUMPY_ONE_LEVEL", 10**9)  # every knot at once
        np.testing.assert_array_equal(_project(scores, groups, 0.01, backend="numpy"), two_levels)
        _check_kkt(scores, groups, two_levels, 0.01)


# ----------------------------------------------------------------------- decisions


def _decide(scores, groups, epsilon, **kwargs):
    return parity_decisions(
        torch.as_tensor(np.asarray(scores, dtype=np.float64)),
        torch.as_tensor(np.asarray(groups)),
        epsilon,
        **kwargs,
    ).numpy()


def _flip_cost(scores, decisions, threshold=0.5):
    flipped = decisions != (scores >= threshold)
    return np.abs(scores - threshold)[flipped].sum()


def _brute_force(scores, groups, epsilon, threshold=0.5):
    """Cheapest top-k-per-group decisions over all (k_g), feasible by fairlearn's float test."""
    labels = np.unique(groups)
    orders = [
        np.flatnonzero(groups == g)[np.argsort(-scores[groups == g], kind="stable")]
        for g in labels
    ]
    best = np.inf
    for ks in itertools.product(*[range(len(o) + 1) for o in orders]):
        rates = [k / len(o) for k, o in zip(ks, orders, strict=True)]
        if max(rates) - min(rates) > epsilon:
            continue
        decisions = np.zeros(len(scores), dtype=bool)
        for k, order in zip(ks, orders, strict=True):
            decisions[order[:k]] = True
        best = min(best, _flip_cost(scores, decisions, threshold))
    return best


@settings(max_examples=120, deadline=None)
@given(instances(max_rows=30, min_rows=2))
def test_decisions_meet_fairlearn_selection_rate_gap(instance):
    scores, groups, n_groups, epsilon = instance
    groups = np.where(groups < 0, 0, groups)
    decisions = _decide(scores, groups, epsilon, n_groups=n_groups)
    assert set(np.unique(decisions)) <= {0, 1}
    gap = demographic_parity_difference(
        np.zeros(len(scores)), decisions, sensitive_features=groups
    )
    assert gap <= epsilon


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 3), st.data())
def test_decisions_meet_fairlearn_gap_at_achievable_rate_differences(n_groups, data):
    # epsilon set exactly to a difference of achievable rates, where rounding bites.
    sizes = data.draw(st.lists(st.integers(1, 9), min_size=n_groups, max_size=n_groups))
    groups = np.repeat(np.arange(n_groups), sizes)
    scores = np.array(
        data.draw(st.lists(score_values, min_size=len(groups), max_size=len(groups)))
    )
    j = [data.draw(st.integers(0, size)) for size in sizes]
    epsilon = abs(j[0] / sizes[0] - j[1] / sizes[1])
    decisions = _decide(scores, groups, epsilon)
    gap = demographic_parity_difference(
        np.zeros(len(scores)), decisions, sensitive_features=groups
    )
    assert gap <= epsilon
    assert _flip_cost(scores, decisions) <= _brute_force(scores, groups, epsilon) + 1e-9


@pytest.mark.parametrize("n_groups", [2, 3])
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.25])
def test_decisions_are_optimal_against_brute_force(n_groups, epsilon):
    rng = np.random.default_rng(n_groups * 10 + int(epsilon * 100))
    for _ in range(15):
        n = rng.integers(n_groups, 11)
        groups = rng.integers(0, n_groups, n)
        groups[:n_groups] = np.arange(n_groups)
        scores = np.round(rng.random(n), rng.choice([1, 3]))
        decisions = _decide(scores, groups, epsilon)
        gap = demographic_parity_difference(np.zeros(n), decisions, sensitive_features=groups)
        assert gap <= epsilon
        assert _flip_cost(scores, decisions) <= _brute_force(scores, groups, epsilon) + 1e-9


def test_decisions_use_one_threshold_per_group_with_ties_by_row_order():
    rng = np.random.default_rng(4)
    scores = np.round(rng.random(300), 1)
    groups = rng.integers(0, 3, 300)
    scores[groups == 2] = np.clip(scores[groups == 2] + 0.3, 0, 1)
    decisions = _decide(scores, groups, 0.02)
    for g in range(3):
        rows = np.flatnonzero(groups == g)
        order = rows[np.argsort(-scores[rows], kind="stable")]
        k = decisions[rows].sum()
        expected = np.zeros(len(scores), dtype=np.int64)
        expected[order[:k]] = 1
        np.testing.assert_array_equal(decisions[rows], expected[rows])


def test_decisions_fall_back_to_the_cheapest_trivial_solution():
    # Sizes 3 and 7 with epsilon 0: only all-zero or all-one decisions have equal rates.
    groups = np.array([0] * 3 + [1] * 7)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.2, 0.3, 0.1, 0.4, 0.35])
    decisions = _decide(scores, groups, 0.0)
    all_one = _flip_cost(scores, np.ones(10, bool))
    all_zero = _flip_cost(scores, np.zeros(10, bool))
    expected = np.ones(10) if all_one < all_zero else np.zeros(10)
    np.testing.assert_array_equal(decisions, expected)


def test_decisions_and_projection_with_a_loose_epsilon_change_nothing():
    scores, groups = _spread_instance(40, 120, 3)
    for epsilon in (1.0, 7.5, 1e300):
        np.testing.assert_array_equal(_decide(scores, groups, epsilon), scores >= 0.5)
        np.testing.assert_array_equal(_project(scores, groups, epsilon), scores)


def test_decisions_equal_thresholding_when_already_fair():
    scores, groups = _instance(2, 200, 3, skew=0.0)
    baseline = (scores >= 0.5).astype(np.int64)
    gap = demographic_parity_difference(np.zeros(200), baseline, sensitive_features=groups)
    np.testing.assert_array_equal(_decide(scores, groups, gap), baseline)
    np.testing.assert_array_equal(_decide(scores, groups, gap, threshold=0.5), baseline)


def test_batched_decisions_equal_row_by_row_and_respect_threshold():
    rng = np.random.default_rng(3)
    scores = rng.random((4, 40))
    groups = rng.integers(-1, 3, (4, 40))
    batched = _decide(scores, groups, 0.05, n_groups=3, threshold=0.3)
    for row in range(4):
        single = _decide(scores[row], groups[row], 0.05, n_groups=3, threshold=0.3)
        np.testing.assert_array_equal(batched[row], single)
        free = groups[row] < 0
        np.testing.assert_array_equal(batched[row][free], scores[row][free] >= 0.3)
        constrained = groups[row] >= 0
        cost = _flip_cost(scores[row][constrained], batched[row][constrained].astype(bool), 0.3)
        assert (
            cost
            <= _brute_force(scores[row][constrained], groups[row][constrained], 0.05, 0.3) + 1e-9
        )


def test_projection_does_not_depend_on_the_number_of_search_rounds(monkeypatch):
    monkeypatch.setattr(projection, "_BACKEND", "torch")  # the rounds of the torch search
    scores, groups = _spread_instance(30, 3000, 3)
    wide = _project(scores, groups, 0.01)
    monkeypatch.setattr(projection, "_PROBES", 2)  # 9 rounds instead of 3
    monkeypatch.setattr(projection, "_ONE_ROUND", 0)
    np.testing.assert_array_equal(_project(scores, groups, 0.01), wide)
    small_scores, small_groups = _spread_instance(32, 200, 3)
    several_rounds = _project(small_scores, small_groups, 0.01)
    monkeypatch.setattr(projection, "_ONE_ROUND", 1024)  # one round over all knots
    np.testing.assert_array_equal(_project(small_scores, small_groups, 0.01), several_rounds)


def test_decisions_do_not_depend_on_candidate_chunking(monkeypatch):
    scores, groups = _spread_instance(31, 500, 3)
    whole = _decide(scores, groups, 0.02)
    monkeypatch.setattr(decisions, "_CANDIDATE_CHUNK", 7)
    np.testing.assert_array_equal(_decide(scores, groups, 0.02), whole)
    gap = demographic_parity_difference(np.zeros(500), whole, sensitive_features=groups)
    assert gap <= 0.02
