"""Graph node features: GraphGPT's ``graph_data_all.pt`` (a pickle of torch_geometric objects) turned
once into plain tensors, and read back per item without torch_geometric.

The converted file is a safetensors file with, per dataset name (``cora``, ``pubmed``, ``arxiv``,
...), ``<name>.x`` = the node feature table [nodes, width] in the source dtype and, when the source
has labels, ``<name>.y`` = int64 [nodes]. Only these are needed: an item's graph is its node list
(global ids into the table) and its own local edge index.
"""

from __future__ import annotations

import pickle
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from lmms_textdom.core.errors import UsageError

CONVERTED_NAME = "graph_data_all.safetensors"
CONVERT_HINT = "lmms-textdom graph-data convert <path>/graph_data_all.pt --output {output}"


class _Opaque:
    """Stands in for a pickled object whose class is not installed (torch_sparse's SparseTensor)."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


class _Unpickler(pickle.Unpickler):
    """Unpickles torch_geometric objects; classes of optional PyG companions become opaque stubs.

    Only ``x`` and ``y`` are read, so the adjacency (``adj_t``, a torch_sparse SparseTensor in the
    arxiv entry) need not be importable.
    """

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except ModuleNotFoundError:
            if module.split(".")[0] in ("torch_sparse", "torch_scatter", "torch_cluster"):
                return _Opaque
            raise


def _pickle_module():
    return SimpleNamespace(Unpickler=_Unpickler, load=lambda f, **kw: _Unpickler(f, **kw).load(), __name__="pickle")


def _tensor(value) -> torch.Tensor | None:
    if value is None or isinstance(value, _Opaque):
        return None
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def convert_graph_data(source: str | Path, output: str | Path | None = None) -> Path:
    """Write the plain-tensor copy of ``graph_data_all.pt`` and return its path (default: next to the source)."""
    source = Path(source)
    output = Path(output) if output else source.with_name(CONVERTED_NAME)
    try:
        import torch_geometric  # noqa: F401  (its classes are what the pickle holds)
    except ImportError:
        raise UsageError("converting graph_data_all.pt needs torch_geometric: pip install 'lmms-textdom[graph]'") from None
    if not source.is_file():
        raise UsageError(f"no such file: {source} (GraphGPT's node features, hub Jiabin99/All_pyg_graph_data)")
    data = torch.load(source, map_location="cpu", weights_only=False, pickle_module=_pickle_module())
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{source} holds {type(data).__name__}, expected a dict of dataset name -> torch_geometric Data")
    tensors = {}
    for name, graph in data.items():
        x = _tensor(getattr(graph, "x", None))
        if x is None or x.dim() != 2:
            raise UsageError(f"{source}: dataset {name!r} has no 2-D node feature table x")
        tensors[f"{name}.x"] = x.contiguous()
        y = _tensor(getattr(graph, "y", None))
        if y is not None:
            tensors[f"{name}.y"] = y.reshape(-1).long().contiguous()
    from safetensors.torch import save_file

    output.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(output))
    return output


@lru_cache(maxsize=4)
def feature_table(path: str, dataset: str) -> torch.Tensor:
    """The node feature table of ``dataset`` in the converted file at ``path``."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise UsageError(f"no converted graph features at {path}; write them once with\n  {CONVERT_HINT.format(output=path)}")
    with safe_open(path, framework="pt") as handle:
        key = f"{dataset}.x"
        if key not in handle.keys():
            names = sorted({k.split(".")[0] for k in handle.keys()})
            raise UsageError(f"{path} has no node features for dataset {dataset!r}; it holds {', '.join(names)}")
        return handle.get_tensor(key)


def node_features(table: torch.Tensor, node_list, where: str) -> torch.Tensor:
    """Rows ``node_list`` of ``table``; a node id outside the table is an error naming ``where`` (the item)."""
    ids = torch.as_tensor(list(node_list), dtype=torch.long)
    bad = ids[(ids < 0) | (ids >= table.shape[0])]
    if len(bad):
        raise UsageError(f"{where}: node id {int(bad[0])} is outside the feature table of {table.shape[0]} nodes")
    return table[ids]


def add_convert_arguments(parser) -> None:
    """``lmms-textdom graph-data convert SOURCE [--output PATH]``."""
    sub = parser.add_subparsers(dest="graph_command", required=True)
    convert = sub.add_parser("convert", help="graph_data_all.pt (torch_geometric pickle) -> plain-tensor safetensors, once")
    convert.add_argument("source", type=Path, help="GraphGPT's graph_data_all.pt (hub Jiabin99/All_pyg_graph_data)")
    convert.add_argument("--output", type=Path, help=f"where to write (default: {CONVERTED_NAME} next to the source)")


def run_convert(args) -> Path:
    output = convert_graph_data(args.source, args.output)
    from safetensors import safe_open

    with safe_open(str(output), framework="pt") as handle:
        for key in sorted(handle.keys()):
            print(f"{key}: {list(handle.get_slice(key).get_shape())} {handle.get_slice(key).get_dtype()}")
    print(f"wrote {output}")
    return output
