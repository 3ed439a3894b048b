"""L1 raw storage: every file exactly as it landed, addressed by sha256, one manifest per landing."""

from .index import RawIndex
from .landing import ImportResult, LandingResult, run_import
from .manifest import Manifest, manifest_key, object_key
from .reader import read_object, read_stream, stored_objects

__all__ = ["Manifest", "manifest_key", "object_key", "RawIndex", "ImportResult",
           "LandingResult", "run_import", "read_object", "read_stream", "stored_objects"]
