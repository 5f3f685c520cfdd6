"""Bring trained neural networks into compliance, the scikit-learn way.

Public names are imported lazily, so that ``import sklearn_metaedit`` stays fast and
torch-geometric is loaded only by the editor.
"""

from importlib import import_module

__version__ = "0.1.0.dev0"

_PUBLIC = {
    "MLP": "sklearn_metaedit._mlp",
    "FairnessLayerClassifier": "sklearn_metaedit.fairness",
    "OnlineFairPredictor": "sklearn_metaedit.fairness",
    "MetanetEditor": "sklearn_metaedit.editing",
    "make_population": "sklearn_metaedit.editing",
    "TaskData": "sklearn_metaedit.editing",
    "save_editor": "sklearn_metaedit.editing",
    "load_editor": "sklearn_metaedit.editing",
    "set_thread_limit": "sklearn_metaedit._threads",
    "get_thread_limit": "sklearn_metaedit._threads",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sklearn_metaedit' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
