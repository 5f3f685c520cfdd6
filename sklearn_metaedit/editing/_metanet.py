"""The graph metanetwork: message passing over parameter graphs that outputs an edit.

The metanetwork reads a batch of parameter graphs (:mod:`._graph`) and returns, per
weight, a gate logit and a residual, and per neuron a bias residual and a gate logit
(used on input neurons for data minimisation). Its output heads are zero-initialised,
so an untrained metanetwork proposes the identity edit.

Hidden neurons get no identity feature and aggregation is a mean over neighbours, so
the metanetwork is equivariant to permuting the hidden neurons of any layer: the edit of
a permuted network is the permuted edit. Input and output neurons keep their identity
through a learned embedding per feature and per class.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from ._graph import HIDDEN, INPUT, OUTPUT

__all__ = ["EdgeNodeConv", "GraphMetanetwork", "layer_scale", "unbatch_edit"]

_EPS = 1e-12


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, n_hidden), nn.ReLU(inplace=True), nn.Linear(n_hidden, n_out)
    )


class EdgeNodeConv(MessagePassing):
    """One round of message passing that updates edge and node features.

    Edges are updated from their two end nodes; nodes are updated from the mean message
    of their incoming edges (along the edge direction, from the previous layer) and of
    their outgoing edges (against it, from the next layer), each direction with its own
    message function.

    Every function of an edge and its end nodes is a two-layer MLP whose first layer is
    linear in the concatenation ``[h_source, h_target, e]``; that layer is computed as
    ``A h_source + B h_target + C e``, with ``A h`` and ``B h`` evaluated once per node
    rather than once per edge. A message's output layer is linear too, so it is applied
    after the mean over a node's edges. Both are exact rewrites of the concatenated MLP
    and cut the cost per edge (networks have far more weights than neurons) about 2.5x.

    Parameters
    ----------
    channels : int
        Width of node and edge features.
    hidden : int
        Width of the hidden layer of each update MLP.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__(aggr="mean")
        self.edge_source = nn.Linear(channels, hidden)
        self.edge_target = nn.Linear(channels, hidden, bias=False)
        self.edge_self = nn.Linear(channels, hidden, bias=False)
        self.edge_out = nn.Linear(hidden, channels)
        self.along_node = nn.Linear(channels, hidden)
        self.along_edge = nn.Linear(channels, hidden, bias=False)
        self.along_out = nn.Linear(hidden, channels)
        self.against_node = nn.Linear(channels, hidden)
        self.against_edge = nn.Linear(channels, hidden, bias=False)
        self.against_out = nn.Linear(hidden, channels)
        self.node_update_mlp = _mlp(3 * channels, hidden, channels)
        self.node_norm = nn.LayerNorm(channels)
        self.edge_norm = nn.LayerNorm(channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(
        self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update features.

        Parameters
        ----------
        h : Tensor of shape (N, channels)
            Node features.
        edge_index : Tensor of shape (2, E)
        e : Tensor of shape (E, channels)
            Edge features, aligned with ``edge_index``.

        Returns
        -------
        h, e : Tensors of shapes (N, channels) and (E, channels)
        """
        source, target = edge_index
        gathered = self.edge_source(h).index_select(0, source)
        gathered += self.edge_target(h).index_select(0, target)
        hidden = torch.addmm(gathered, e, self.edge_self.weight.t())
        e = self.edge_norm(e + self.edge_out(self.activation(hidden)))
        along = self._aggregate(
            edge_index, self.along_node(h), self.along_edge(e), self.along_out, h.shape[0]
        )
        against = self._aggregate(
            edge_index.flip(0),
            self.against_node(h),
            self.against_edge(e),
            self.against_out,
            h.shape[0],
        )
        h = self.node_norm(h + self.node_update_mlp(torch.cat([h, along, against], dim=-1)))
        return h, e

    def _aggregate(self, edge_index, node_part, edge_part, out: nn.Linear, n_nodes: int):
        """``out`` of the mean hidden message into each node (zero for a node without
        incoming edges, as a mean over no messages)."""
        mean = self.propagate(edge_index, x=node_part, edge_part=edge_part, size=None)
        has_edges = torch.zeros(n_nodes, 1, device=node_part.device, dtype=node_part.dtype)
        has_edges.index_fill_(0, edge_index[1], 1.0)
        return out(mean) * has_edges

    def message(self, x_j: torch.Tensor, edge_part: torch.Tensor) -> torch.Tensor:
        """Hidden message of shape (E, hidden) from the neighbour ``j`` across each edge."""
        return self.activation(x_j.add_(edge_part))


def layer_scale(graph: Data | Batch) -> torch.Tensor:
    """Root-mean-square weight of each edge's layer, per graph: shape (E,).

    Residuals are expressed in this unit, so that one metanetwork serves layers and
    networks whose weights differ in scale.
    """
    edge_graph = _edge_graph(graph)
    n_layers = int(graph.edge_layer.max()) + 1
    key = edge_graph * n_layers + graph.edge_layer
    squared = graph.edge_weight.detach().float() ** 2
    mean_square = scatter(squared, key, dim=0, dim_size=int(key.max()) + 1, reduce="mean")
    return mean_square.index_select(0, key).clamp_min(_EPS).sqrt()


def _edge_graph(graph: Data | Batch) -> torch.Tensor:
    if getattr(graph, "batch", None) is None:
        return torch.zeros_like(graph.edge_layer)
    return graph.batch.index_select(0, graph.edge_index[0])


class GraphMetanetwork(nn.Module):
    """Graph metanetwork that maps parameter graphs to per-weight and per-bias edits.

    Parameters
    ----------
    n_features : int
        Number of input neurons of the edited networks (they keep their identity).
    n_classes : int
        Number of output neurons of the edited networks.
    hidden_channels : int, default=32
        Width of node and edge features.
    num_layers : int, default=3
        Rounds of message passing.
    mlp_hidden : int, default=64
        Width of the hidden layer of every MLP inside the metanetwork.
    n_node_flags : int, default=1
        Number of requirement-specific node inputs (e.g. "this feature must be dropped").
    target_anchors : sequence of float, default=None
        Increasing targets (on the scale the metanetwork reads) at which the output heads
        have an output of their own; a network's edit is the linear interpolation of the
        outputs at the two anchors around its target (the end anchor's beyond the ends).
        The message passing is shared; the heads give each part of a range of targets
        weights of its own, so that the edits at one end do not pull those at the other.
        None: one output, read at every target.

    Examples
    --------
    >>> import torch
    >>> from sklearn_metaedit import MLP
    >>> from sklearn_metaedit.editing._graph import extract_weights, weights_to_graph
    >>> graph = weights_to_graph(extract_weights(MLP(3, hidden_sizes=(4,))))
    >>> metanet = GraphMetanetwork(n_features=3, n_classes=2)
    >>> out = metanet(graph, target=torch.tensor([0.5]))
    >>> out["weight_residual"].shape, float(out["weight_residual"].detach().abs().max())
    (torch.Size([20]), 0.0)
    """

    #: Number of raw edge and node features (see ``_edge_inputs`` / ``_node_inputs``).
    N_EDGE_INPUTS = 7
    N_NODE_INPUTS = 7

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        *,
        hidden_channels: int = 32,
        num_layers: int = 3,
        mlp_hidden: int = 64,
        n_node_flags: int = 1,
        target_anchors: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)
        self.n_node_flags = int(n_node_flags)
        anchors = None if target_anchors is None else [float(a) for a in target_anchors]
        if anchors is not None and (
            len(anchors) < 2 or any(b <= a for a, b in itertools.pairwise(anchors))
        ):
            raise ValueError(
                f"target_anchors must be at least 2 increasing numbers, got {target_anchors!r}."
            )
        self.register_buffer(
            "target_anchors",
            None if anchors is None else torch.tensor(anchors),
            persistent=False,
        )
        n_heads = 1 if anchors is None else len(anchors)
        c = int(hidden_channels)
        self.edge_encoder = _mlp(self.N_EDGE_INPUTS, mlp_hidden, c)
        self.node_encoder = _mlp(self.N_NODE_INPUTS + self.n_node_flags, mlp_hidden, c)
        self.input_embedding = nn.Embedding(self.n_features, c)
        self.output_embedding = nn.Embedding(self.n_classes, c)
        self.convs = nn.ModuleList(EdgeNodeConv(c, mlp_hidden) for _ in range(int(num_layers)))
        # two edge outputs (gate logit, weight residual), two node outputs (bias residual,
        # gate logit); the last layers start at zero so the first edit is the identity
        self.edge_head = _mlp(c, mlp_hidden, 2 * n_heads)
        self.node_head = _mlp(c, mlp_hidden, 2 * n_heads)
        for head in (self.edge_head, self.node_head):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def forward(
        self,
        graph: Data | Batch,
        target: torch.Tensor,
        node_flags: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Propose an edit for every network of the batch.

        Parameters
        ----------
        graph : Data or Batch
            Parameter graphs with ``N`` nodes and ``E`` edges in all.
        target : Tensor of shape (n_graphs,)
            The requirement's target for each network (e.g. the sparsity fraction).
        node_flags : Tensor of shape (N, n_node_flags), optional
            Requirement-specific node inputs; zeros when omitted.

        Returns
        -------
        edit : dict of Tensors
            ``weight_gate`` (E,), ``weight_residual`` (E,) in units of the layer's RMS
            weight, ``bias_residual`` (N,) in the same unit (of the neuron's layer),
            ``node_gate`` (N,).
        """
        node_graph = (
            graph.batch
            if getattr(graph, "batch", None) is not None
            else torch.zeros(graph.num_nodes, dtype=torch.long, device=graph.bias.device)
        )
        target = target.float().reshape(-1)
        scale = layer_scale(graph)
        e = self.edge_encoder(
            self._edge_inputs(graph, scale, target.index_select(0, _edge_graph(graph)))
        )
        if node_flags is None:
            node_flags = torch.zeros(graph.num_nodes, self.n_node_flags, device=e.device)
        node_scale = self._node_scale(graph, scale)
        h = self.node_encoder(
            torch.cat(
                [self._node_inputs(graph, node_scale, target[node_graph]), node_flags.float()],
                dim=-1,
            )
        )
        is_input = graph.node_kind == INPUT
        is_output = graph.node_kind == OUTPUT
        h = h.clone()
        h[is_input] = h[is_input] + self.input_embedding(graph.node_identity[is_input])
        h[is_output] = h[is_output] + self.output_embedding(graph.node_identity[is_output])
        for conv in self.convs:
            h, e = conv(h, graph.edge_index, e)
        edge_out = self.edge_head(e)
        node_out = self.node_head(h)
        if self.target_anchors is not None:
            mix = self.anchor_weights(target)
            edge_out = _mix(edge_out, mix.index_select(0, _edge_graph(graph)))
            node_out = _mix(node_out, mix.index_select(0, node_graph))
        return {
            "weight_gate": edge_out[:, 0],
            "weight_residual": edge_out[:, 1],
            "bias_residual": node_out[:, 0],
            "node_gate": node_out[:, 1],
            "edge_scale": scale,
            "node_scale": node_scale,
        }

    def anchor_weights(self, target: torch.Tensor) -> torch.Tensor:
        """Interpolation weights of shape (n_graphs, n_anchors): at most two nonzero per
        row, summing to 1, linear in the target between its two anchors."""
        anchors = self.target_anchors
        target = target.float().reshape(-1).clamp(float(anchors[0]), float(anchors[-1]))
        upper = torch.searchsorted(anchors, target, right=True).clamp(1, len(anchors) - 1)
        lower = upper - 1
        fraction = (target - anchors[lower]) / (anchors[upper] - anchors[lower])
        weights = torch.zeros(len(target), len(anchors), device=target.device)
        weights.scatter_(1, lower[:, None], (1 - fraction)[:, None])
        return weights.scatter_add(1, upper[:, None], fraction[:, None])

    @staticmethod
    def _node_scale(graph: Data | Batch, edge_scale: torch.Tensor) -> torch.Tensor:
        """The RMS weight of the layer that feeds each node (1 for input nodes): (N,)."""
        node_scale = torch.ones(graph.num_nodes, device=edge_scale.device)
        node_scale[graph.edge_index[1]] = edge_scale
        return node_scale

    @staticmethod
    def _edge_inputs(graph, scale: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = graph.edge_weight.detach().float()
        depth = graph.node_depth.index_select(0, graph.edge_index[0]).float()
        layer = graph.edge_layer.float()
        return torch.stack(
            [
                weight / scale,
                torch.log(weight.abs() / scale + 1e-6),
                weight == 0,
                layer / depth,
                layer == 1,
                layer == depth,
                target,
            ],
            dim=-1,
        ).float()

    @staticmethod
    def _node_inputs(graph, node_scale: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bias = graph.bias.detach().float()
        depth = graph.node_depth.float()
        return torch.stack(
            [
                bias / node_scale,
                graph.node_kind == INPUT,
                graph.node_kind == HIDDEN,
                graph.node_kind == OUTPUT,
                graph.node_layer.float() / depth,
                depth / 4.0,
                target,
            ],
            dim=-1,
        ).float()


def _mix(out: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per row, the outputs (2 per anchor, anchor-major) mixed by ``weights``: (rows, 2)."""
    return (out.view(out.shape[0], -1, 2) * weights[:, :, None]).sum(dim=1)


def unbatch_edit(
    edit: dict[str, torch.Tensor], graphs: list[Data]
) -> list[dict[str, torch.Tensor]]:
    """Cut a batched edit into one edit per network.

    Parameters
    ----------
    edit : dict of Tensors
        Output of :meth:`GraphMetanetwork.forward` on ``Batch.from_data_list(graphs)``.
    graphs : list of Data
        The graphs of the batch, in order.

    Returns
    -------
    edits : list of dict of Tensors
        Per network, edge entries of shape (E_i,) and node entries of shape (N_i,).
    """
    edits = []
    edge_start = node_start = 0
    for graph in graphs:
        n_edges, n_nodes = graph.edge_index.shape[1], graph.num_nodes
        edits.append(
            {
                key: (
                    value[edge_start : edge_start + n_edges]
                    if key.startswith(("weight_", "edge_"))
                    else value[node_start : node_start + n_nodes]
                )
                for key, value in edit.items()
            }
        )
        edge_start += n_edges
        node_start += n_nodes
    return edits
