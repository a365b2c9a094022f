"""danlu's Flower ClientApp: a client trains its share of the data with danlu's loop and sends the weights back.

The same object runs in the in-process simulation and inside a real SuperNode (``flower-supernode``), which
passes ``partition-id`` (and optionally ``num-partitions``, ``data-dir``) through ``--node-config``.
"""

from __future__ import annotations

import functools
from typing import Any

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from danlu.errors import DanluError
from danlu.federated.local import build_model, labels_of, prepared, train_locally
from danlu.federated.partition import partition
from danlu.federated.settings import Federation

app = ClientApp()


@functools.lru_cache(maxsize=2)
def _shares(recipe_json: str, data_dir: str, clients: int, split: str) -> list[Any]:
    splits, _, recipe = prepared(recipe_json, data_dir or None)
    return partition(labels_of(splits.train), clients, split, seed=recipe.seed)


def client_share(fed: Federation, node_config: Any) -> tuple[Any, Any, Any, int]:
    """(this client's training rows, schema, recipe, partition id) from the node's config."""
    if "partition-id" not in node_config:
        raise DanluError("this SuperNode has no partition-id in its node config",
                         hint='start it with --node-config "partition-id=0 num-partitions=2"')
    pid = int(node_config["partition-id"])
    clients = int(node_config.get("num-partitions", fed.clients))
    if not 0 <= pid < clients:
        raise DanluError(f"partition-id {pid} is outside 0..{clients - 1}", hint="number the SuperNodes from 0")
    data_dir = str(node_config.get("data-dir", "")) or fed.data_dir
    splits, schema, recipe = prepared(fed.recipe_json, data_dir or None)
    share = splits.train.subset(_shares(fed.recipe_json, data_dir, clients, fed.split)[pid])
    return share, schema, recipe, pid


def _privacy_spent(recipe: Any, context: Context, n: int, row: dict) -> dict[str, float]:
    """This client's ε over every DP step it has taken in this run: the step count lives in the node's state,
    which Flower keeps across rounds (in the simulation and on a SuperNode)."""
    if recipe.train.privacy is None:
        return {}
    from danlu.federated.private import spent

    before = int(context.state["danlu-dp"]["steps"]) if "danlu-dp" in context.state else 0
    steps = before + int(row["dp_steps"])
    context.state["danlu-dp"] = MetricRecord({"steps": steps})
    return {"dp-steps": steps, **{f"dp-{k}": v for k, v in spent(recipe, n, steps).items()}}


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training from the global weights in ``msg``."""
    fed = Federation.from_run_config(context.run_config)
    share, schema, recipe, pid = client_share(fed, context.node_config)
    model = build_model(recipe, schema)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    config = msg.content["config"]
    server_round = int(config["server-round"])
    mu = float(config["proximal-mu"]) if "proximal-mu" in config else 0.0
    row = train_locally(model, share, schema, recipe, epochs=fed.local_epochs,
                        seed=recipe.seed + 7919 * server_round + pid, mu=mu)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    metrics = MetricRecord({"num-examples": len(share), "train_loss": float(row["train_loss"]),
                            "partition-id": pid, **_privacy_spent(recipe, context, len(share), row)})
    return Message(RecordDict({"arrays": ArrayRecord(state), "metrics": metrics}), reply_to=msg)
