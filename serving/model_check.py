"""Check the served model in the BentoML store before the service starts.

A missing or damaged model must stop `bentoml serve` at start with a message saying which model,
what is wrong and how to fix it: the model loads in a background thread of each worker, so a model
file that fails there would otherwise leave a server that listens, stays unready and restarts
workers for ever. The checks read what the workers will read (the store entry, MLmodel, the XGBoost
file) and load the XGBoost file once: a few milliseconds for our models.
"""

from __future__ import annotations

from pathlib import Path

from serving.import_model import HOW_TO, ModelNotFound


class ModelCorrupt(RuntimeError):
    pass


def _fix(tag: str) -> str:
    return f"Delete it with `bentoml models delete {tag}` and import it again: {HOW_TO}"


def check_stored_model(tag: str) -> Path:
    """The model's MLflow directory, once its store entry, MLmodel and XGBoost file read back.
    Raises ModelNotFound (absent) or ModelCorrupt (present but unreadable), naming the file."""
    import bentoml
    import xgboost as xgb
    import yaml

    from model_runtime.scoring import read_mlmodel

    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise ModelNotFound(f"model {tag!r} is not in the BentoML store. {HOW_TO}") from None
    except Exception as exc:  # the store entry's model.yaml unreadable
        raise ModelCorrupt(f"model {tag!r}: its BentoML store entry (model.yaml) is unreadable "
                           f"({type(exc).__name__}: {str(exc)[:300]}). {_fix(tag)}") from None
    path = Path(stored.path_of("mlflow_model"))
    mlmodel = path / "MLmodel"
    try:
        spec = read_mlmodel(path)
        data = spec["flavors"]["xgboost"]["data"]
        features = spec["metadata"]["features"]
        if not isinstance(features, list) or not features:
            raise ValueError("no feature list in its metadata")
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ModelCorrupt(f"model {tag!r}: its MLmodel file {mlmodel} is missing or damaged "
                           f"({type(exc).__name__}: {str(exc)[:300]}). {_fix(tag)}") from None
    model_file = path / data
    try:
        xgb.Booster().load_model(str(model_file))
    except (OSError, xgb.core.XGBoostError) as exc:
        raise ModelCorrupt(f"model {tag!r}: its XGBoost model file {model_file} is missing or damaged "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}). "
                           f"{_fix(tag)}") from None
    return path
