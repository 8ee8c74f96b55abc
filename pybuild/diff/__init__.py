"""Layer changesets: scan an overlay upperdir or compare two trees; the deterministic tar writer;
the safe applier; compression. Reads and writes byte streams and directories; knows nothing of
blobs or manifests."""

from .applier import ApplyReport, apply_layer
from .changeset import Change, diff_trees, scan_upperdir, walk
from .compression import COMPRESSIONS, LayerStats, LayerWriter, detect_compression, open_layer
from .idmap import IdMap
from .tarwriter import write_layer, write_tree

__all__ = [
    "COMPRESSIONS",
    "ApplyReport",
    "Change",
    "IdMap",
    "LayerStats",
    "LayerWriter",
    "apply_layer",
    "detect_compression",
    "diff_trees",
    "open_layer",
    "scan_upperdir",
    "walk",
    "write_layer",
    "write_tree",
]
