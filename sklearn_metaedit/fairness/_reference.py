"""The parity projection as a cvxpy problem: the reference for tests and for extra constraints.

:func:`project_parity_cvxpy` solves the problem that
:func:`~sklearn_metaedit.fairness._projection.project_parity` solves in closed form, with a
generic conic solver. It is slower and only as accurate as the solver's tolerance, but it
accepts additional linear constraints ``A z <= b``.
"""

from __future__ import annotations

import math
import numbers
import warnings

import cvxpy as cp
import numpy as np

__all__ = ["project_parity_cvxpy"]

# Tight tolerances: the reference must be accurate well below the 1e-6 that tests allow.
_SOLVER_ARGS = {
    "CLARABEL": {
        "tol_gap_abs": 1e-12,
        "tol_gap_rel": 1e-12,
        "tol_feas": 1e-12,
        "tol_ktratio": 1e-10,
        "max_iter": 500,
    },
    "OSQP": {"eps_abs": 1e-11, "eps_rel": 1e-11, "max_iter": 200_000, "polishing": True},
    "SCS": {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 200_000},
}


def _solvers(n: int) -> list[str]:
    installed = cp.installed_solvers()
    # OSQP's polishing lands on the exact active set but slows down on large problems,
    # where the interior-point CLARABEL is both fast and accurate.
    preference = ("OSQP", "CLARABEL", "SCS") if n <= 2000 else ("CLARABEL", "OSQP", "SCS")
    names = [name for name in preference if name in installed]
    if not names:
        raise ValueError(
            f"project_parity_cvxpy needs one of the solvers OSQP, CLARABEL or SCS; cvxpy has "
            f"{installed}."
        )
    return names


def project_parity_cvxpy(
    scores,
    groups,
    epsilon: float,
    *,
    blocks=None,
    A=None,
    b=None,
    solver: str | None = None,
) -> np.ndarray:
    """Project scores onto the parity band (and ``A z <= b``) with cvxpy.

    Solves ::

        min ||z - s||^2  s.t.  0 <= z <= 1,  a_B <= mean_g(z) <= a_B + epsilon
                               for every nonempty group g of every block B,  A z <= b

    where the band positions ``a_B`` are free variables, one per block.

    Parameters
    ----------
    scores : array-like of shape (n,)
        The scores to project.
    groups : array-like of int, shape (n,)
        Group codes ``>= 0``; ``-1`` marks a row that no parity constraint involves.
    epsilon : float
        The largest allowed difference between two group means, ``>= 0``.
    blocks : array-like of int, shape (n,), optional
        Block of each row; each block has its own band. By default one block.
    A : array-like of shape (m, n), optional
        Extra linear constraints ``A z <= b``.
    b : array-like of shape (m,), optional
        Right-hand side of the extra constraints; required with ``A``.
    solver : str, optional
        A cvxpy solver name. By default OSQP with solution polishing (which lands on
        the exact active set) up to 2000 rows and CLARABEL above, each handing over to
        the next installed of OSQP, CLARABEL and SCS when it stops short of an optimal
        solution; all run with tight tolerances.

    Returns
    -------
    z : ndarray of float64, shape (n,)
        The solver's solution.

    Raises
    ------
    ValueError
        On inconsistent shapes, a negative ``epsilon``, or when the solver does not
        reach an optimal solution (for instance when ``A z <= b`` makes the problem
        infeasible). A solution that the solvers only reach inaccurately is returned
        with a ``UserWarning``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_metaedit.fairness._reference import project_parity_cvxpy
    >>> z = project_parity_cvxpy(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1]), 0.1)
    >>> np.round(z, 6)
    array([0.6, 0.5, 0.5, 0.4])
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}.")
    n = s.shape[0]
    codes = np.asarray(groups)
    if codes.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {codes.shape}.")
    codes = codes.astype(np.int64)
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise ValueError(f"epsilon must be a real number >= 0, got {epsilon!r}.")
    if not math.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}.")
    block = np.zeros(n, dtype=np.int64) if blocks is None else np.asarray(blocks, dtype=np.int64)
    if block.shape != (n,):
        raise ValueError(f"blocks must have shape ({n},), got {block.shape}.")
    if (A is None) != (b is None):
        raise ValueError("pass A and b together: the extra constraints are A z <= b.")

    z = cp.Variable(n)
    constraints = [z >= 0, z <= 1]
    for block_id in np.unique(block[codes >= 0]):
        lower = cp.Variable()
        for g in np.unique(codes[(codes >= 0) & (block == block_id)]):
            rows = np.flatnonzero((codes == g) & (block == block_id))
            mean = cp.sum(z[rows]) / len(rows)
            constraints += [mean >= lower, mean <= lower + float(epsilon)]
    if A is not None:
        A = np.asarray(A, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if A.ndim != 2 or A.shape[1] != n or b.shape != (A.shape[0],):
            raise ValueError(
                f"A must have shape (m, {n}) and b shape (m,), got {A.shape} and {b.shape}."
            )
        constraints.append(A @ z <= b)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(z - s)), constraints)
    outcomes = []
    inaccurate = None
    # A solver that stops short (iteration limit, numerical trouble) hands over to the next.
    for name in [solver] if solver else _solvers(n):
        try:
            with warnings.catch_warnings():
                # The status is checked below; an inaccurate solve hands over to the next.
                warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
                problem.solve(solver=name, **_SOLVER_ARGS.get(name, {}))
        except cp.SolverError as error:
            outcomes.append(f"{name}: {error}")
            continue
        if problem.status == cp.OPTIMAL and z.value is not None:
            return np.asarray(z.value, dtype=np.float64)
        if problem.status == cp.OPTIMAL_INACCURATE and inaccurate is None:
            inaccurate = np.asarray(z.value, dtype=np.float64)
        outcomes.append(f"{name} ended with status {problem.status!r}")
    if inaccurate is not None:
        warnings.warn(
            f"the reference solution is inaccurate ({'; '.join(outcomes)}).",
            UserWarning,
            stacklevel=2,
        )
        return inaccurate
    raise ValueError(f"no solver reached an optimal solution: {'; '.join(outcomes)}.")
