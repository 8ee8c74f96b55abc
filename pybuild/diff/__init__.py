"""Layer changesets: the overlay format (overlay.py) and the one tree comparison (trees.py); scan an
overlay upperdir or compare trees; the deterministic tar writer; the safe applier; compression.
Reads and writes byte streams and directories; knows nothing of blobs or manifests."""

from .applier import ApplyReport, apply_layer
from .changeset import Change, changes_of, diff_trees, scan_upperdir
from .compression import COMPRESSIONS, LayerStats, LayerWriter, detect_compression, open_layer
from .idmap import IdMap
from .tarwriter import write_layer, write_tree
from .trees import Difference, Meta, TreeRecord, compare, walk

__all__ = [
    "COMPRESSIONS",
    "ApplyReport",
    "Change",
    "Difference",
    "IdMap",
    "LayerStats",
    "LayerWriter",
    "Meta",
    "TreeRecord",
    "apply_layer",
    "changes_of",
    "compare",
    "detect_compression",
    "diff_trees",
    "open_layer",
    "scan_upperdir",
    "walk",
    "write_layer",
    "write_tree",
]
