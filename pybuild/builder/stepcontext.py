"""What every step is given: :class:`StepContext`, the build's fixed inputs and shared services (the
store, the options, the cache, scratch space, the stages built so far). Steps get this and the
stage's :class:`~pybuild.builder.state.StageState`, never the whole build."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..layout import ImageStore, Platform, mediatype
from ..layout.mutate import source_date_epoch as environment_epoch
from ..run.layers import layer_dir, layer_dirs_of, remove_tree
from .attestations import BuildFacts
from .containerfile import Stage
from .ignore import IgnoreRules
from .options import BuildOptions
from .sharedcache import StepCache
from .state import Layers, StageState


class Reporter:
    """Where the build says what it does (warnings go to :func:`pybuild.errors.warn`). The CLI
    prints; the Python API and tests may collect."""

    def step(self, text: str) -> None:
        pass

    def info(self, text: str) -> None:
        pass


def source_date_epoch(options: BuildOptions) -> int | None:
    """--timestamp, else $SOURCE_DATE_EPOCH, else None (now)."""
    if options.timestamp is not None:
        return options.timestamp
    return environment_epoch()


@dataclass
class StepContext:
    store: ImageStore
    options: BuildOptions
    context: Path  # the build context, absolute
    file: Path  # the Containerfile ("-": standard input)
    reporter: Reporter
    epoch: int | None
    platform: Platform  # the target platform
    cache: StepCache  # the store's step records, and the shared caches behind them
    scratch: Path  # the store's build workspaces
    stages: list[Stage] = field(default_factory=list)  # every stage of the plan
    results: dict[int, StageState] = field(default_factory=dict)  # the stages built so far
    automatic: dict[str, str] = field(default_factory=dict)  # the platform ARGs
    used_args: set[str] = field(default_factory=set)
    facts: BuildFacts = field(default_factory=BuildFacts)  # for the provenance: start, inputs read
    _rules: IgnoreRules | None = None

    @property
    def docker(self) -> bool:
        return self.options.docker

    @property
    def compression(self) -> str:
        return self.options.compression or "none"

    @property
    def layer_media_type(self) -> str:
        """The media type of the layers this build makes."""
        return mediatype.layer_media_type(self.compression, docker=self.docker)

    @property
    def rules(self) -> IgnoreRules:
        """The context's ignore file, read the first time a step needs it."""
        if self._rules is None:
            self._rules = IgnoreRules.load(self.context, self.file, self.options.ignorefile)
        return self._rules

    def layer_dirs(self, layers: Layers) -> list[Path]:
        """The layer directories of ``layers`` (top first), extracted once each into the store (the
        blobs a shared cache named are fetched first, for the layers not extracted yet)."""
        self.cache.fetch(
            [(d, diff_id) for d, diff_id in layers if not layer_dir(self.store, diff_id).is_dir()]
        )
        return layer_dirs_of(self.store, self.store, layers)

    @contextlib.contextmanager
    def workspace(self) -> Iterator[Path]:
        """A scratch folder in the store for one step, removed afterwards."""
        top = Path(tempfile.mkdtemp(prefix="step-", dir=self.scratch))
        try:
            yield top
        finally:
            remove_tree(top)


def make_context(store: ImageStore, options: BuildOptions, reporter: Reporter) -> StepContext:
    from .containerfile import find_containerfile

    context = options.context.absolute()
    return StepContext(
        store=store,
        options=options,
        context=context,
        file=find_containerfile(context, options.containerfile),
        reporter=reporter,
        epoch=source_date_epoch(options),
        platform=options.target_platform,
        cache=StepCache(store, options, store.private.workspaces),
        scratch=store.private.workspaces,
    )
