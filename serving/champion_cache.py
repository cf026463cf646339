"""ChampionCache: the last champion of each surface, kept on disk beside its compiled libraries, so a
service that starts while the registry is down or corrupt serves it instead of the heuristic.

Layout under the compiled cache dir (`LOUPE_HOME/serving/compiled/`, serving.compiled_ranker):

    <model hash>/<booster>.so          the compiled libraries (compiled_ranker)
    <model hash>/ranker/               the ranker's own files (training.models.Ranker.save)
    champion-<surface>.json            the manifest: registered model, version, kind, feature
                                       names, the ranker's folder (relative), when it was kept,
                                       and the reference it was served for (`@champion`)
    treatment-<surface>.json           the same for an experiment's treatment arm (its own role:
                                       the arm never overwrites the champion's)

Every process of the service writes the same content; the manifest is replaced atomically and the
ranker folder appears by one rename, so a reader never sees half of either. The manifest goes when
the registry answers that the surface has no champion: a restart never brings back a model that was
taken away.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from serving.compiled_ranker import model_hash
from training.models import META_FILE, Ranker

CHAMPION = "champion"


@dataclass(frozen=True)
class CachedChampion:
    surface: str
    name: str  # registered model
    version: str
    kind: str
    feature_names: list[str]
    path: str  # the ranker's folder, relative to the cache dir
    kept_at: str  # UTC, ISO-8601
    target: str = ""  # the model reference it was served for (serving.model_ref); "": kept before they were


class ChampionCache:
    def __init__(self, root: Path, role: str = CHAMPION):
        self.root, self.role = Path(root), role

    def manifest_path(self, surface: str) -> Path:
        return self.root / f"{self.role}-{surface}.json"

    def save(self, surface: str, name: str, version: str, ranker: Ranker, target: str = "") -> CachedChampion:
        folder = self.root / model_hash(ranker) / "ranker"
        if not (folder / META_FILE).exists():
            tmp = folder.with_name(f"ranker.{os.getpid()}.{threading.get_ident()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            ranker.save(tmp)
            try:
                tmp.rename(folder)  # atomic; another process may have put the same files there first
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        kept = CachedChampion(surface, name, str(version), ranker.kind, list(ranker.feature_names),
                              str(folder.relative_to(self.root)),
                              time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), target)
        path = self.manifest_path(surface)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(asdict(kept), indent=2))
        tmp.replace(path)
        return kept

    def load(self, surface: str) -> tuple[CachedChampion, Ranker] | None:
        """The kept champion and its ranker; None when none is kept. A manifest that does not match
        its files raises (the caller serves the heuristic)."""
        path = self.manifest_path(surface)
        if not path.exists():
            return None
        kept = CachedChampion(**json.loads(path.read_text()))
        ranker = Ranker.load(self.root / kept.path)
        if list(ranker.feature_names) != kept.feature_names or ranker.kind != kept.kind:
            raise ValueError(f"{path}: the kept ranker does not match its manifest")
        return kept, ranker

    def forget(self, surface: str) -> None:
        self.manifest_path(surface).unlink(missing_ok=True)
