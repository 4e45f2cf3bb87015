"""The graph level: trace a module into one typed data-flow graph, and ask it questions."""

from initlab.graph.examples import example_inputs
from initlab.graph.nodes import Graph, Kind, Node
from initlab.graph.queries import (
    Nonlinearity,
    Residual,
    consumers,
    consuming_activation,
    feeding_activation,
    layers,
    producer_layers,
    producers,
    residual_adds,
)
from initlab.graph.record import lazy_modules, record
from initlab.graph.trace import trace
from initlab.graph.vocab import Entry, register_function, register_module

__all__ = [
    "Kind",
    "Node",
    "Graph",
    "trace",
    "record",
    "lazy_modules",
    "example_inputs",
    "Entry",
    "register_module",
    "register_function",
    "Nonlinearity",
    "Residual",
    "producers",
    "producer_layers",
    "consumers",
    "consuming_activation",
    "feeding_activation",
    "residual_adds",
    "layers",
]
