"""The layer graph of a Keras 3 model, as far as the int8 fixes need it: which layer feeds which.

Read from the model's own serialized config (`get_config()['layers'][i]['inbound_nodes']`),
the public description of a Functional model; a Sequential model is a chain. Nested
models are walked recursively: pairs of layers are only ever found inside one model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

MODEL_INPUT = ""  # the name `layer_outputs` gives a (sub)model's own input


@dataclass
class LayerGraph:
    """One (sub)model: its layers by name, each one's producers and consumers (layer names)."""

    model: object
    layers: dict[str, object]
    feed: Callable[[np.ndarray], np.ndarray]  # the top model's input batch -> this model's input batch
    producers: dict[str, list[str]] = field(default_factory=dict)
    consumers: dict[str, list[str]] = field(default_factory=dict)

    def only_consumer(self, name: str) -> str | None:
        """The single layer reading `name`'s output, or None if several (or none) do."""
        readers = self.consumers.get(name, [])
        return readers[0] if len(readers) == 1 else None


def is_keras3(model) -> bool:
    return type(model).__module__.startswith("keras.")  # tf_keras models live in "tf_keras.src..."


def model_graphs(model, feed: Callable[[np.ndarray], np.ndarray] = lambda x: x) -> list[LayerGraph]:
    """The graph of `model` and of every model nested in it (a nested model must have one input)."""
    import keras

    graph = _graph(model, feed)
    graphs = [graph]
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            producers = graph.producers.get(layer.name, [])
            if len(producers) != 1:
                continue
            tensor = graph.layers[producers[0]].output
            inner = keras.Model(model.inputs[0], tensor) if tensor is not model.inputs[0] else None
            graphs += model_graphs(layer, _chain(feed, inner))
    return graphs


def _chain(feed, inner):
    if inner is None:
        return feed
    return lambda x: np.asarray(inner(feed(x), training=False))


def layer_outputs(graphs: list[LayerGraph], names: dict[int, list[str]], samples: np.ndarray, batch: int = 16
                  ) -> Iterator[dict[tuple[int, str], np.ndarray]]:
    """Per batch of `samples`, the output of each named layer ({graph index: [layer names]}).

    Under the name MODEL_INPUT, the input of each graph's model.
    """
    import keras

    probes = {}
    for index, wanted in names.items():
        graph = graphs[index]
        tensors = [graph.layers[n].output for n in wanted if n != MODEL_INPUT]
        probes[index] = (wanted, keras.Model(graph.model.inputs[0], tensors))
    for start in range(0, len(samples), batch):
        x = samples[start:start + batch]
        out = {}
        for index, (wanted, probe) in probes.items():
            fed = graphs[index].feed(x)
            values = probe(fed, training=False)
            values = iter(values if isinstance(values, (list, tuple)) else [values])
            out.update({(index, n): np.asarray(fed if n == MODEL_INPUT else next(values)) for n in wanted})
        yield out


def _graph(model, feed) -> LayerGraph:
    import keras

    layers = {layer.name: layer for layer in model.layers}
    graph = LayerGraph(model, layers, feed)
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        edges = list(zip(names, names[1:]))
    else:
        edges = []
        for entry in model.get_config()["layers"]:
            for node in entry.get("inbound_nodes", []):
                for parent in _history_names(node):
                    edges.append((parent, entry["config"]["name"]))
    for parent, child in edges:
        if parent in layers and child in layers:
            graph.producers.setdefault(child, []).append(parent)
            graph.consumers.setdefault(parent, []).append(child)
    return graph


def _history_names(obj) -> list[str]:
    """Names of the layers whose output tensors appear anywhere in a serialized call."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [obj["config"]["keras_history"][0]]
        return [n for v in obj.values() for n in _history_names(v)]
    if isinstance(obj, (list, tuple)):
        return [n for v in obj for n in _history_names(v)]
    return []


def linear_kind(layer) -> str | None:
    """'conv', 'depthwise' or 'dense' for the layers the int8 fixes scale and correct; None otherwise."""
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise" if layer.depth_multiplier == 1 else None
    if isinstance(layer, keras.layers.Conv2D):
        return "conv" if layer.groups == 1 else None
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    return None
