"""Flower's ClientApp for a hospital (runs inside its SuperNode): answers the coordinator's messages from
the site's local cache (training/federated_site.py). `pverisk federated site` prepares the cache and starts
the SuperNode with `--node-config 'site-name="..." cache="..."'`; the simulation engine gives each virtual
node a `partition-id` instead, mapped to a cache by `make_client_app`.

Messages (Flower's Message API): QUERY with config action "summary" (what the site recorded, counts only),
"curve" (validation loss by number of trees), "calibrate" (gradient of the Platt likelihood), "evaluate" (the held-out row of figures); TRAIN (boost on
the global model). An invalid site answers "summary" with its problems (counts and columns, never rows or
values) and refuses everything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from training import federated_site as fs
from training.federated_site import site_learning_rate


def _cache(context: Context, caches: list[str] | None) -> Path:
    if "cache" in context.node_config:
        return Path(str(context.node_config["cache"]))
    if caches is not None:  # the simulation engine: one cache per virtual node
        return Path(caches[int(context.node_config["partition-id"])])
    raise RuntimeError("this SuperNode has no site cache: start it with `pverisk federated site`")


def _model(msg: Message) -> bytes:
    arrays = msg.content.array_records.get("arrays")
    return arrays["0"].numpy().tobytes() if arrays is not None and len(arrays) else b""


def _config(msg: Message) -> dict[str, Any]:
    return dict(msg.content["config"]) if "config" in msg.content.config_records else {}


class Refused(RuntimeError):
    pass


def make_client_app(caches: list[str] | None = None) -> ClientApp:
    app = ClientApp()

    def site(context: Context) -> fs.SiteData:
        cache = _cache(context, caches)
        summary = fs.read_summary(cache)
        if summary["status"] != "ok":
            raise Refused(f"site {summary['site']} refuses: its file broke the contract ({summary['problems']} "
                          f"problems in {summary['rows']} rows; {summary['summary']})")
        return fs.SiteData(cache)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        cfg = _config(msg)
        action = cfg.get("action")
        if action == "summary":
            return _reply(msg, {"summary": json.dumps(fs.read_summary(_cache(context, caches)))})
        data = site(context)
        columns = json.loads(str(cfg["columns"]))
        if action == "calibrate":
            stats = fs.calibration_step(data, _model(msg), columns, float(cfg["a"]), float(cfg["b"]))
            return Message(content=RecordDict({"metrics": MetricRecord(stats)}), reply_to=msg)
        if action == "curve":
            stats = fs.loss_curve(data, _model(msg), columns, [int(k) for k in json.loads(str(cfg["sizes"]))])
            return Message(content=RecordDict({"metrics": MetricRecord(stats)}), reply_to=msg)
        if action == "evaluate":
            row = fs.evaluate_site(data, _model(msg), columns, json.loads(str(cfg["calibration"])),
                                   int(cfg["min-events"]))
            return _reply(msg, {"row": json.dumps(row, default=float)})
        raise ValueError(f"unknown query action {action!r}")

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        cfg = _config(msg)
        data = site(context)
        params = json.loads(str(cfg["params"]))
        params["eta"] = site_learning_rate(float(params["eta"]), data.summary["splits"]["boost"]["n"],
                                           int(cfg["total-n"]), int(cfg["n-sites"]), bool(cfg["bagging"]))
        model, n = fs.boost(data, _model(msg), json.loads(str(cfg["columns"])), params, int(cfg["local-rounds"]),
                            bool(cfg["bagging"]))
        return Message(content=RecordDict({"arrays": ArrayRecord([np.frombuffer(model, dtype=np.uint8)]),
                                           "metrics": MetricRecord({"num-examples": n})}), reply_to=msg)

    return app


def _reply(msg: Message, values: dict[str, str]) -> Message:
    return Message(content=RecordDict({"reply": ConfigRecord(values)}), reply_to=msg)


# The deployed app (training/flower_app/pyproject.toml: clientapp = "training.federated_client:app").
app: ClientApp = make_client_app()
