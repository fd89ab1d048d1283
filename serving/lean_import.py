"""Imports that keep the serving processes small."""

from __future__ import annotations

import sys


def xgboost_without_sklearn() -> None:
    """Import xgboost without scikit-learn and SciPy.

    xgboost imports scikit-learn when it is installed (training needs it, so it is) to define
    its estimator classes; that pulls in SciPy: about 90 MB in each of `bentoml serve`'s two
    processes, for classes the service never uses (it loads a plain Booster). Hidden while
    xgboost loads, scikit-learn stays importable afterwards, but xgboost's own estimators are
    then unusable in this process: call this only in the service (never in training or tests).
    """
    if "xgboost" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # makes `import sklearn` raise ImportError
    try:
        import xgboost  # noqa: F401
    finally:
        del sys.modules["sklearn"]
