"""How many threads the estimators' training and prediction loops use.

The networks this package trains and edits are small: a batch of a tabular MLP is a few
matrix products of a few hundred columns, where one thread is as fast as several on a
free machine, and several are far slower on a busy one (each waits for the others'
cores). So the loops the estimators own run with ``get_thread_limit()`` threads in torch,
in the BLAS libraries (OpenBLAS, MKL) and in the OpenMP pools, and every setting is
restored when the loop ends.

torch and OpenMP keep their thread count per thread (``torch.set_num_threads`` sets the
calling thread's), while OpenBLAS's is one for the whole process. The BLAS limit is
therefore taken by the first loop that starts and given back by the last that ends,
under a lock, so that fits running in several threads at once (``GridSearchCV`` with a
threading backend) neither undo each other's limits nor leave a limit behind.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from numbers import Integral
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

# one thread: what suits the small networks of tabular data (see the module docstring)
_DEFAULT_LIMIT = 1
_limit: int | None = _DEFAULT_LIMIT

_lock = threading.Lock()
_state = {"depth": 0, "blas": None, "torch_outer": None}
_local = threading.local()


def set_thread_limit(n_threads: int | None) -> None:
    """Set how many threads the estimators' own training and prediction loops may use.

    ``FairnessLayerClassifier``, ``OnlineFairPredictor``, ``MetanetEditor`` and
    ``make_population`` run their loops (fit, predict, transform, score) with this many
    threads in torch, in the BLAS libraries and in the OpenMP pools, and restore the
    previous settings when the loop ends. The default, 1, suits the small networks of
    tabular data: on a free machine it is about as fast as one thread per core, and on a
    busy one it avoids the oversubscription that makes several threads many times slower.
    Raise it for wide networks on a machine of their own.

    Parameters
    ----------
    n_threads : int >= 1 or None
        The number of threads; ``None`` leaves torch's, the BLAS libraries' and OpenMP's
        settings as they are (for instance as ``threadpoolctl`` or ``torch.set_num_threads``
        set them).

    See Also
    --------
    get_thread_limit : the limit in force.

    Examples
    --------
    >>> from sklearn_metaedit import get_thread_limit, set_thread_limit
    >>> get_thread_limit()
    1
    >>> set_thread_limit(4)
    >>> get_thread_limit()
    4
    >>> set_thread_limit(1)
    """
    global _limit
    if n_threads is not None and (
        isinstance(n_threads, bool) or not isinstance(n_threads, Integral) or n_threads < 1
    ):
        raise ValueError(
            "n_threads must be a whole number of at least 1, or None to leave the thread "
            f"pools as they are; got {n_threads!r}."
        )
    _limit = None if n_threads is None else int(n_threads)


def get_thread_limit() -> int | None:
    """The number of threads the estimators' loops use (``None``: pools left as they are).

    See Also
    --------
    set_thread_limit : set it.
    """
    return _limit


@contextmanager
def limited_threads() -> Iterator[None]:
    """Run the enclosed loop with ``get_thread_limit()`` threads; restore the settings after.

    Re-entrant: a loop inside another (a fit that predicts) keeps the outer limit.
    """
    limit = _limit
    if limit is None or getattr(_local, "active", False):
        yield
        return
    import torch

    _local.active = True
    with _lock:
        if _state["depth"] == 0:
            _state["torch_outer"] = torch.get_num_threads()
            _state["blas"] = _controller().select(user_api="blas").limit(limits=limit)
        _state["depth"] += 1
    own_torch = torch.get_num_threads()
    # OpenMP's thread count belongs to the calling thread: limited here, not under the lock
    openmp = _controller().select(user_api="openmp").limit(limits=limit)
    torch.set_num_threads(limit)
    try:
        yield
    finally:
        openmp.restore_original_limits()
        with _lock:
            _state["depth"] -= 1
            last = _state["depth"] == 0
            if last:
                _state["blas"].restore_original_limits()
                _state["blas"] = None
            # torch's setting for threads not started yet is the last one set in any
            # thread: the last loop to end sets back the count in force before the first
            torch.set_num_threads(_state["torch_outer"] if last else own_torch)
        _local.active = False


def with_thread_limit(method: _F) -> _F:
    """Decorate an estimator method so that it runs inside :func:`limited_threads`."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with limited_threads():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


_controllers: dict[int, Any] = {}
_controller_lock = threading.Lock()


def _controller():
    """threadpoolctl's view of the loaded thread pools, rebuilt when a library was loaded.

    Building it walks the loaded shared libraries (about a millisecond): done once per
    set of loaded libraries, not once per prediction.
    """
    import sys

    from threadpoolctl import ThreadpoolController

    # a new module may have loaded a new BLAS or OpenMP library
    key = len(sys.modules)
    with _controller_lock:
        controller = _controllers.get(key)
        if controller is None:
            controller = ThreadpoolController()
            _controllers.clear()
            _controllers[key] = controller
    return controller
