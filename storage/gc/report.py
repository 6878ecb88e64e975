"""What a collection removed (or, dry, would remove), per repository, and how it is printed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storage.digest import Digest
from storage.gc import duration, size

NO_REPOSITORY = "(no repository links it)"


@dataclass(slots=True)
class RepositoryReport:
    name: str
    untagged: list[tuple[str, str]] = field(default_factory=list)  # (tag, why)
    manifests: list[Digest] = field(default_factory=list)
    blobs: dict[Digest, int] = field(default_factory=dict)  # blobs freed that this repository linked, with sizes
    layer_links: int = 0
    uploads: int = 0
    removed: bool = False  # the repository was left empty and removed

    def empty(self) -> bool:
        return not (self.untagged or self.manifests or self.blobs or self.layer_links or self.uploads or self.removed)


@dataclass(slots=True)
class Report:
    t0_ns: int
    grace: float
    dry_run: bool
    offline: bool
    repositories: dict[str, RepositoryReport] = field(default_factory=dict)
    repositories_seen: int = 0
    manifests_seen: int = 0
    blobs_seen: int = 0
    blobs_marked: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0
    bytes_seen: int = 0  # of every blob seen: a marked blob's size as its descriptor gives it (no stat)
    bytes_referenced: int = 0  # what each repository's kept manifests need, summed over repositories
    bytes_needed: int = 0  # the same, each digest once
    postponed: int = 0  # candidates touched or locked during the run: left for the next one
    trash_emptied: int = 0
    finished_ns: int = 0

    def repository(self, name: str) -> RepositoryReport:
        found = self.repositories.get(name)
        if found is None:
            found = self.repositories[name] = RepositoryReport(name)
        return found

    @property
    def manifests_deleted(self) -> int:
        return sum(len(r.manifests) for r in self.repositories.values())

    @property
    def tags_removed(self) -> int:
        return sum(len(r.untagged) for r in self.repositories.values())

    @property
    def blobs_stored(self) -> int:
        """Blobs left in storage after the run."""
        return self.blobs_seen - self.blobs_deleted

    @property
    def bytes_stored(self) -> int:
        return self.bytes_seen - self.bytes_freed

    @property
    def bytes_deduplicated(self) -> int:
        """What storing each repository's content on its own would take more."""
        return max(0, self.bytes_referenced - self.bytes_needed)

    @property
    def uploads_purged(self) -> int:
        return sum(r.uploads for r in self.repositories.values())

    def summary(self) -> dict[str, Any]:
        """The run as state.json and metrics keep it."""
        return {
            "started": _iso(self.t0_ns),
            "started_ns": self.t0_ns,
            "finished": _iso(self.finished_ns) if self.finished_ns else None,
            "seconds": round((self.finished_ns - self.t0_ns) / 1e9, 3) if self.finished_ns else None,
            "dry_run": self.dry_run,
            "offline": self.offline,
            "grace": duration.render(self.grace),
            "repositories": self.repositories_seen,
            "manifests": self.manifests_seen,
            "blobs": self.blobs_seen,
            "blobs_marked": self.blobs_marked,
            "blobs_deleted": self.blobs_deleted,
            "bytes_freed": self.bytes_freed,
            "blobs_stored": self.blobs_stored,
            "bytes_stored": self.bytes_stored,
            "bytes_deduplicated": self.bytes_deduplicated,
            "manifests_deleted": self.manifests_deleted,
            "tags_removed": self.tags_removed,
            "uploads_purged": self.uploads_purged,
            "postponed": self.postponed,
        }

    def render(self, quiet: bool = False) -> str:
        verb = "would remove" if self.dry_run else "removed"
        mode = "offline" if self.offline else f"online, grace {duration.render(self.grace)}"
        lines = [f"garbage collection{' (dry run)' if self.dry_run else ''}: {mode}, started {_iso(self.t0_ns)}"]
        if not quiet:
            for name in sorted(self.repositories, key=lambda n: (n == NO_REPOSITORY, n)):
                repo = self.repositories[name]
                if repo.empty():
                    continue
                lines.append(name)
                for tag, why in repo.untagged:
                    lines.append(f"  tag      {tag}  ({why})")
                for digest in repo.manifests:
                    lines.append(f"  manifest {digest}")
                for digest, blob_size in sorted(repo.blobs.items(), key=lambda item: str(item[0])):
                    lines.append(f"  blob     {digest}  {size.render(blob_size)}")
                parts = [f"{len(repo.manifests)} manifests", f"{len(repo.blobs)} blobs"]
                if repo.layer_links:
                    parts.append(f"{repo.layer_links} layer links")
                if repo.uploads:
                    parts.append(f"{repo.uploads} uploads")
                if repo.removed:
                    parts.append("the repository itself (left empty)")
                freed = size.render(sum(repo.blobs.values()))
                lines.append(f"  = {verb} {', '.join(parts)}; {freed}")
        lines.append(
            f"{verb} {self.blobs_deleted} of {self.blobs_seen} blobs ({size.render(self.bytes_freed)}), "
            f"{self.manifests_deleted} manifests, {self.tags_removed} tags, {self.uploads_purged} uploads "
            f"in {self.repositories_seen} repositories; {self.blobs_marked} blobs in use"
            + (f"; {self.postponed} postponed (in use during the run)" if self.postponed else "")
        )
        return "\n".join(lines) + "\n"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
