"""Flower's ServerApp for the coordinator (runs where the SuperLink runs): asks the sites what they recorded,
trains with Flower's XGBoost strategy (FedXgbBagging or FedXgbCyclic) over the sites whose files are valid,
recalibrates from the sites' summed gradients, has each site score its held-out patients, and records the
run in MLflow (training/federated_tracking.py). A site that refuses (invalid file) or drops out is named
in the run, which goes on with the others.

Deployed: `flwr run training/flower_app ...` (what `pverisk federated train` does) loads `app` below with the
run config; the simulation engine gets an app built by `make_server_app(config)`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedXgbBagging, FedXgbCyclic

from feature_store import contract as c
from training import federated_run as fr

log = logging.getLogger("pverisk.federated")


class SitesGrid(Grid):
    """The run's view of the grid: only the sites that accepted and have not dropped out (Flower's strategies
    sample from `get_node_ids`)."""

    def __init__(self, grid: Grid, sites: fr.Sites):
        self._grid, self._sites = grid, sites

    def get_node_ids(self) -> Iterable[int]:
        online = set(self._grid.get_node_ids())
        nodes = [n for n in self._sites.accepted() if n in online]
        if not nodes:
            raise RuntimeError("no site is left in the run: " + "; ".join(self._sites.notes()))
        return nodes

    def __getattr__(self, name: str) -> Any:  # everything else is the grid's
        return getattr(self._grid, name)

    def set_run(self, run: Any) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Any:
        return self._grid.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:  # pragma: no cover - deprecated API
        return self._grid.create_message(*args, **kwargs)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self._grid.send_and_receive(messages, timeout=timeout)


class _Tracking:
    """Records which sites were asked and which answered in each round; a site that does not answer is
    dropped from the run (not waited for again) and named."""

    sites: fr.Sites
    asked: list[int]

    def _record(self, server_round: int, replies: Iterable[Message]) -> list[Message]:
        replies = list(replies)
        ok = {m.metadata.src_node_id for m in replies if not m.has_error()}
        for m in replies:
            if m.has_error() and m.metadata.src_node_id not in self.sites.dropped:
                self.sites.dropped[m.metadata.src_node_id] = f"error in round {server_round} ({(m.error.reason or 'no reason given')[:200]})"
        for node in self.asked:
            if node not in ok and node not in self.sites.dropped:
                self.sites.dropped[node] = f"no answer in round {server_round}"
        self.sites.rounds.append({"round": server_round, "asked": [self.sites.name(n) for n in self.asked],
                                  "replied": len(ok)})
        return [m for m in replies if not m.has_error()]


class Bagging(_Tracking, FedXgbBagging):
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.asked = [m.metadata.dst_node_id for m in messages]
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return super().aggregate_train(server_round, self._record(server_round, replies))


class Cyclic(_Tracking, FedXgbCyclic):
    def _make_sampling(self, grid: Grid, server_round: int, configure_type: str) -> list[int]:
        """The next site in turn among those still in the run (never waits for a minimum of connected nodes).
        Turns go by site name, not by node id: node ids are drawn at random when nodes connect, so ordering by
        them gave every run (and every simulation) another order of sites, and another model."""
        nodes = self._reorder_nodes(sorted(grid.get_node_ids(), key=lambda n: (str(self.sites.name(n)), n)))
        return [nodes[(server_round - 1) % len(nodes)]]

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.asked = [m.metadata.dst_node_id for m in messages]
        return messages

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return []  # held-out evaluation happens once, at the end, at every site

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return super().aggregate_train(server_round, self._record(server_round, replies))


def _query(grid: Grid, nodes: list[int], config: dict[str, Any], model: bytes = b"", timeout: float = 300
           ) -> dict[int, Message]:
    content: dict[str, Any] = {"config": ConfigRecord(config)}
    if model:
        content["arrays"] = ArrayRecord([np.frombuffer(model, dtype=np.uint8)])
    msgs = [Message(content=RecordDict(content), message_type=MessageType.QUERY, dst_node_id=n,
                    group_id=str(config.get("action"))) for n in nodes]
    return {m.metadata.src_node_id: m for m in grid.send_and_receive(msgs, timeout=timeout)}


def _wait_for_sites(grid: Grid, cfg: fr.FederatedConfig) -> list[int]:
    deadline = time.monotonic() + cfg.wait_for_sites_s
    nodes = list(grid.get_node_ids())
    while len(nodes) < max(cfg.expected_sites, cfg.min_sites) and time.monotonic() < deadline:
        time.sleep(1)
        nodes = list(grid.get_node_ids())
    if len(nodes) < cfg.min_sites:
        raise RuntimeError(f"{len(nodes)} sites connected after {cfg.wait_for_sites_s:.0f} s; at least "
                           f"{cfg.min_sites} needed")
    return nodes


def _summaries(grid: Grid, nodes: list[int], cfg: fr.FederatedConfig, sites: fr.Sites) -> None:
    replies = _query(grid, nodes, {"action": "summary"}, timeout=cfg.round_timeout_s)
    for node in nodes:
        reply = replies.get(node)
        if reply is None or reply.has_error():
            sites.summaries[node] = {"site": f"node {node}", "status": "no answer"}
            sites.refused[node] = "did not answer the first message"
            continue
        summary = json.loads(str(reply.content["reply"]["summary"]))
        sites.summaries[node] = summary
        if summary["status"] != "ok":
            sites.refused[node] = (f"its file broke the contract: {summary['problems']} problems in {summary['rows']} "
                                   f"rows ({summary['summary']}); the problems are listed at the site")


def _keep_trees(grid: Grid, model: bytes, columns: list[str], sites: fr.Sites, cfg: fr.FederatedConfig
                ) -> tuple[bytes, dict[str, Any]]:
    """Early stopping after the fact: the model's size (in whole rounds) with the lowest log-loss summed over
    the sites' calibration patients. Federated boosting has no held-out set of its own to stop on, and
    XGBoost's early stopping needs the data in one place; each site scores every prefix of the model on its
    own patients and returns one sum per size."""
    import xgboost as xgb

    bst = xgb.Booster()
    bst.load_model(bytearray(model))
    grown = bst.num_boosted_rounds()
    per_round = max(1, grown // max(cfg.rounds, 1))
    sizes = sorted({*range(per_round, grown + 1, per_round), grown})
    replies = _query(grid, sites.accepted(), {"action": "curve", "columns": json.dumps(columns),
                                              "sizes": json.dumps(sizes)}, model, cfg.round_timeout_s)
    stats = [dict(m.content["metrics"]) for m in replies.values() if not m.has_error()]
    patients = int(sum(float(s.get("n", 0)) for s in stats))
    if not cfg.keep_best_size or not patients:  # nothing to choose on: never cut the model blind
        rule = ("all trees kept (keep-best-size off)" if not cfg.keep_best_size else
                "all trees kept (no site could score the model's sizes on calibration patients)")
        return model, {"grown": grown, "kept": grown, "rule": rule, "patients": patients}
    loss = {k: sum(float(s.get(f"loss-{k}", 0.0)) for s in stats) for k in sizes}
    kept = fr.trees_to_keep(loss)
    if kept < grown:
        model = bytes(bst[:kept].save_raw("json"))
    return model, {"grown": grown, "kept": kept, "rule": "fewest trees with the lowest summed log-loss on the "
                   "sites' calibration patients", "patients": patients}


def _calibrate(grid: Grid, model: bytes, columns: list[str], sites: fr.Sites, cfg: fr.FederatedConfig
               ) -> dict[str, Any]:
    """Platt recalibration of the boosted model by Newton's method on the sites' summed gradients."""
    a, b = 1.0, 0.0
    for _ in range(8):
        replies = _query(grid, sites.accepted(), {"action": "calibrate", "columns": json.dumps(columns), "a": a, "b": b},
                         model, cfg.round_timeout_s)
        stats = [dict(m.content["metrics"]) for m in replies.values() if not m.has_error()]
        a, b, step = fr.newton_platt(stats, a, b)
        if step < 1e-5:
            break
    return {"method": "sigmoid", "a": a, "b": b, "fitted": "federated Newton on the sites' calibration patients"}


def run_federated(grid: Grid, cfg: fr.FederatedConfig) -> dict[str, Any]:
    from training.federated_tracking import log_and_register

    t0 = time.perf_counter()
    sites = fr.Sites()
    _summaries(grid, _wait_for_sites(grid, cfg), cfg, sites)
    valid = [sites.summaries[n] for n in sites.accepted()]
    if len(valid) < cfg.min_sites:
        raise RuntimeError(f"{len(valid)} valid sites, at least {cfg.min_sites} needed: " + "; ".join(sites.notes()))
    features, recorded_by = fr.choose_features(valid)
    columns = c.model_columns(features)
    base = sum(s["splits"]["boost"]["events"] for s in valid) / max(sum(s["splits"]["boost"]["n"] for s in valid), 1)
    params = fr.xgb_params(columns, base, len(valid), cfg)
    total = sum(s["splits"]["boost"]["n"] for s in valid)
    train_config = ConfigRecord({"columns": json.dumps(columns), "params": json.dumps(params),
                                 "total-n": total, "n-sites": len(valid),
                                 "local-rounds": 1 if cfg.strategy == "bagging" else cfg.local_rounds,
                                 "bagging": cfg.strategy == "bagging"})
    common = dict(fraction_evaluate=0.0, min_available_nodes=1)
    strategy = (Bagging(min_train_nodes=1, min_evaluate_nodes=1, **common) if cfg.strategy == "bagging"
                else Cyclic(**common))
    strategy.sites = sites
    view = SitesGrid(grid, sites)
    result = strategy.start(grid=view, initial_arrays=ArrayRecord([np.frombuffer(b"", dtype=np.uint8)]),
                            num_rounds=cfg.rounds, timeout=cfg.round_timeout_s, train_config=train_config)
    model, trees = _keep_trees(view, result.arrays["0"].numpy().tobytes(), columns, sites, cfg)
    calibration = _calibrate(view, model, columns, sites, cfg)
    replies = _query(view, sites.accepted(), {"action": "evaluate", "columns": json.dumps(columns),
                                              "calibration": json.dumps(calibration), "min-events": cfg.min_events},
                     model, cfg.round_timeout_s)
    rows = [json.loads(str(m.content["reply"]["row"])) for m in replies.values() if not m.has_error()]
    evaluation = fr.site_evaluation(rows, sites)
    record = fr.summary_record(cfg, sites, features, recorded_by, evaluation, calibration, time.perf_counter() - t0)
    record["trees"] = trees
    if cfg.tracking_uri:  # the simulation benchmark compares models without registering them
        record["registration"] = log_and_register(cfg, sites, model, features, columns, calibration, evaluation, record)
    if cfg.result_file:
        with open(cfg.result_file, "w") as fh:
            fh.write(fr.as_json(record))
    return record


def make_server_app(config: dict[str, Any] | None = None) -> ServerApp:
    """The ServerApp; `config` (simulation) stands in for the run config `flwr run` passes."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = fr.FederatedConfig.from_run_config({**dict(context.run_config), **(config or {})})
        try:
            run_federated(grid, cfg)
        except RuntimeError as exc:
            # a run that cannot go on (too few valid sites, none left) is an answer, not a crash: the reason
            # goes to the coordinator's command, which prints it and exits 1, instead of a ServerApp traceback
            if not cfg.result_file:
                raise
            with open(cfg.result_file, "w") as fh:
                fh.write(fr.as_json({"error": str(exc)}))

    return app


# The deployed app (training/flower_app/pyproject.toml: serverapp = "training.federated_server:app").
app: ServerApp = make_server_app()
