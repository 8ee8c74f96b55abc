"""OCI image layouts: digests, descriptors, documents, the blob store, index.json, images, check, gc;
the store's private area (``.pybuild/``) and its gc.

Knows nothing of tar, processes or Containerfiles.
"""

from . import mediatype
from .blobinfo import BlobInfoCache, Compressed
from .check import GcResult, check_layout, gc, reachable
from .descriptor import REF_NAME, Descriptor, Platform
from .digest import Digest
from .document import Document, ImageConfig, Index, Manifest, OciLayoutFile, dump_json, load_json
from .image import (
    Image,
    build_manifest,
    commit_image,
    copy_blobs,
    format_layer,
    host_platform,
    load_image,
    parse_platform,
    read_config,
    read_index,
    read_manifest,
    referenced_blobs,
    select_manifest,
    stage_copy,
)
from .imagelayout import Layout
from .imagestore import (
    ImageStore,
    Located,
    default_store_path,
    destination,
    locate,
    open_layout,
    open_store,
    untag,
)
from .manifestlist import (
    add_to_list,
    create_list,
    find_list,
    is_list,
    list_entry,
    read_list,
    remove_from_list,
)
from .mutate import ConfigChanges, add_history, configure, created_time, edit_image, source_date_epoch
from .private import PrivateArea, SweepResult
from .reference import ImageName, Reference, parse_name, parse_reference
from .referrers import EMPTY_DESCRIPTOR, attach, is_artifact, referrers
from .store import BlobStore, BlobWriter, StagedBlobs

__all__ = [
    "EMPTY_DESCRIPTOR",
    "REF_NAME",
    "BlobInfoCache",
    "BlobStore",
    "BlobWriter",
    "Compressed",
    "ConfigChanges",
    "Descriptor",
    "Digest",
    "Document",
    "GcResult",
    "Image",
    "ImageConfig",
    "ImageName",
    "ImageStore",
    "Index",
    "Layout",
    "Located",
    "Manifest",
    "OciLayoutFile",
    "Platform",
    "PrivateArea",
    "Reference",
    "StagedBlobs",
    "SweepResult",
    "add_history",
    "add_to_list",
    "attach",
    "build_manifest",
    "check_layout",
    "commit_image",
    "configure",
    "copy_blobs",
    "create_list",
    "created_time",
    "default_store_path",
    "destination",
    "dump_json",
    "edit_image",
    "find_list",
    "format_layer",
    "gc",
    "host_platform",
    "is_artifact",
    "is_list",
    "list_entry",
    "load_image",
    "load_json",
    "locate",
    "mediatype",
    "open_layout",
    "open_store",
    "parse_name",
    "parse_platform",
    "parse_reference",
    "reachable",
    "read_config",
    "read_index",
    "read_list",
    "read_manifest",
    "referenced_blobs",
    "referrers",
    "remove_from_list",
    "select_manifest",
    "source_date_epoch",
    "stage_copy",
    "untag",
]
