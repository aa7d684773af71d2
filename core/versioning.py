"""DVC plumbing for run versioning: files into a DVC cache, objects to and from a DVC remote,
and run manifests at fixed keys in that remote.

What `dvc add` + `dvc push` would do, through DVC's Python API one level below the commands:
dvc_data `build` hashes a file or directory (DVC's md5; a directory becomes a `.dir` tree object),
`transfer` copies the objects into the cache, and `Repo.cloud.push` / `Repo.cloud.pull` move them
between the cache and the remote. The remote therefore holds ordinary DVC objects
(`files/md5/ab/cdef...`), and any DVC tool can fetch them by hash.

No call here takes the repository lock (`.dvc/tmp/lock`, taken by the `dvc` commands). So version
steps of parallel DAG runs do not fail on one another, and neither do they fail on a `dvc repro`
that runs the `version` stage itself. Cache and remote writes are DVC's own: temp file, then
rename. Two processes that add the same object both succeed, and the object is whole either way.

Remote layout (DVC's objects, plus a prefix of our own for manifests):

    <remote>/files/md5/<2>/<30>                                   DVC objects (files and .dir trees)
    <remote>/mtrec/manifests/<run_id>.json                        every manifest pushed, by run id
    <remote>/mtrec/runs/<dataset>/<date>/<model>/latest.json      the newest manifest of a run directory

`dvc gc --cloud` deletes every object that no git revision references, and run objects are
referenced only by manifests. Never run it against the run remote.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from core.atomic import atomic_path
from core.config import REPO_ROOT, VersioningParams

if TYPE_CHECKING:
    from dvc.repo import Repo
    from dvc_data.hashfile.hash_info import HashInfo

PREFIX = "mtrec"
# Files in versioned directories that are not data: the validation ledger's records
# (components/validate.py LEDGER) and their atomic-write temp files. A record says when and under
# which suite the data was checked; in the tree it would change a day's DVC hash without a byte of
# data changing, and a record rewritten while a parallel run hashes the day would race the copy.
UNVERSIONED = ("_validated.json",)
LOCAL_REMOTE = "mtrec-local"   # the ad-hoc name of a remote given as a path or URL
HASH_NAME = "md5"


class VersioningError(RuntimeError):
    """A push, fetch or check against the DVC remote failed."""


class IntegrityError(VersioningError):
    """Bytes from the remote do not match the hash the manifest recorded."""


def manifest_key(run_id: str) -> str:
    return f"{PREFIX}/manifests/{run_id}.json"


def latest_key(dataset: str, date: str, model_name: str) -> str:
    return f"{PREFIX}/runs/{dataset}/{date}/{model_name}/latest.json"


def file_digests(path: Path) -> dict:
    """md5 (what DVC names a file object by), sha256 and size of one file, in one read."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
            size += len(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest(), "size": size}


def _is_url(remote: str) -> bool:
    return "://" in remote or remote.startswith(("/", ".", "~")) or os.sep in remote


def unversioned(name: str) -> bool:
    """A file name a directory's DVC tree leaves out (UNVERSIONED, or one's atomic-write temp file)."""
    return name in UNVERSIONED or any(name.startswith(f".{n}.") and name.endswith(".tmp") for n in UNVERSIONED)


class _Unversioned:
    """dvc_data's Ignore for `build`: walks a directory without the UNVERSIONED files."""

    def walk(self, fs, path, **kwargs):
        for root, dirs, files in fs.walk(path, **kwargs):
            if isinstance(files, dict):
                yield root, dirs, {k: v for k, v in files.items() if not unversioned(k)}
            else:
                yield root, dirs, [f for f in files if not unversioned(f)]

    def find(self, fs, path, **kwargs):
        for root, _, files in self.walk(fs, path, **kwargs):
            for name in files:
                yield fs.join(root, name)


@dataclass
class Store:
    """A DVC repository handle bound to one cache directory and one remote."""

    repo: "Repo"
    remote_name: str
    jobs: int

    @property
    def cache(self):
        return self.repo.cache.local

    @property
    def remote_url(self) -> str:
        remote = self.repo.cloud.get_remote(self.remote_name)
        return remote.fs.unstrip_protocol(remote.path)

    # ------------------------------------------------------------------ objects

    def add(self, path: Path) -> tuple["HashInfo", dict]:
        """Hash a file or directory and copy its objects into the cache (no link back, no .dvc file).

        Returns the object's HashInfo and {"md5", "size", "nfiles"} (md5 ends in .dir for a tree).
        """
        from dvc_data.hashfile.build import build
        from dvc_data.hashfile.transfer import transfer

        staging, meta, obj = build(self.cache, os.fspath(path), self.cache.fs, HASH_NAME, ignore=_Unversioned())
        transfer(staging, self.cache, {obj.hash_info}, shallow=False, hardlink=False)
        return obj.hash_info, {"md5": obj.hash_info.value, "size": meta.size, "nfiles": meta.nfiles}

    def _with_children(self, hash_infos: Iterable["HashInfo"]) -> list["HashInfo"]:
        """Trees and the file objects they list (DVC's push/pull move exactly the ids they are given)."""
        from dvc_data.hashfile.tree import Tree

        out: dict = {}
        for hi in hash_infos:
            out[hi] = None
            if hi.isdir:
                out.update(dict.fromkeys(entry for _, _, entry in Tree.load(self.cache, hi)))
        return list(out)

    def push(self, hash_infos: Iterable["HashInfo"]) -> int:
        """Send objects (trees with their files) from the cache to the remote; returns objects sent."""
        objs = self._with_children(hash_infos)
        result = self.repo.cloud.push(objs, jobs=self.jobs, remote=self.remote_name)
        if result.failed:
            raise VersioningError(f"push to {self.remote_url} failed for {len(result.failed)} objects: "
                                  f"{sorted(h.value for h in result.failed)[:5]}")
        return len(result.transferred)

    def fetch(self, hash_infos: Iterable["HashInfo"], names: dict[str, str] | None = None) -> int:
        """Bring objects (trees with their files) from the remote into the cache, like `dvc fetch`.

        An object the remote holds whose bytes do not hash to its name is refused (DVC verifies
        local remotes on the way in; checkout() checks again for remotes it does not verify):
        IntegrityError, naming the file through `names` (md5 -> path) when given.
        """
        hash_infos = list(hash_infos)
        names = names or {}
        odb = self.repo.cloud.get_remote_odb(self.remote_name)
        present: set[str] = set()

        def pull(objs: list) -> tuple[set, set]:
            # Which objects the remote holds, asked before the pull: DVC deletes an object that
            # fails its hash check on a local remote, so afterwards "corrupted" looks like "missing".
            present.update(h.value for h in objs if odb.exists(h.value))
            result = self.repo.cloud.pull(objs, jobs=self.jobs, remote=self.remote_name)
            return result.transferred, {h for h in objs if not self._in_cache(h)} | result.failed

        transferred, bad = pull(hash_infos)  # trees first, then the files they list
        if not bad:
            children = [h for h in self._with_children(hash_infos) if h not in set(hash_infos)]
            more, bad = pull(children)
            transferred |= more
        if bad:
            oids = sorted(h.value for h in bad)
            label = lambda oid: f"{names[oid]} ({oid})" if oid in names else oid  # noqa: E731
            corrupt = [oid for oid in oids if oid in present]
            if corrupt:
                raise IntegrityError(f"the remote {self.remote_url} holds {', '.join(map(label, corrupt[:5]))} with bytes "
                                     "that do not hash to the manifest's md5 (tampered or corrupted remote object)")
            raise VersioningError(f"{len(oids)} objects are missing from the remote {self.remote_url}: "
                                  f"{', '.join(map(label, oids[:5]))}")
        return len(transferred)

    def _in_cache(self, hash_info: "HashInfo") -> bool:
        return self.cache.exists(hash_info.value)

    def checkout(self, hash_info: "HashInfo", dest: Path) -> None:
        """Copy a cached file or tree to dest (replacing it) and check every byte against its hash.

        A mismatch deletes the bad cache objects, so the next fetch takes them from the remote
        again, and raises IntegrityError naming the file.
        """
        dest = Path(dest)
        if hash_info.isdir:
            from dvc_data.hashfile.tree import Tree

            tree = Tree.load(self.cache, hash_info)
            files = [(dest.joinpath(*key), entry) for key, _, entry in tree]
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            for target, entry in files:
                self._copy_checked(entry.value, target)
            # The tree's own hash over the restored files: DVC's algorithm, so a swapped or dropped
            # file fails here even when every copied file matched its entry.
            got = self.digest(dest)["md5"]
            if got != hash_info.value:
                self.cache.delete(hash_info.value)
                raise IntegrityError(f"{dest}: restored directory hashes to {got}, the manifest says {hash_info.value}")
        else:
            self._copy_checked(hash_info.value, dest)

    def _copy_checked(self, md5: str, target: Path) -> None:
        with atomic_path(target) as tmp:
            shutil.copyfile(self.cache.oid_to_path(md5), tmp)
            got = file_digests(tmp)["md5"]
            if got != md5:
                self.cache.delete(md5)
                raise IntegrityError(f"{target}: the bytes fetched from {self.remote_url} hash to md5 {got}, "
                                     f"the manifest says {md5} (tampered or corrupted remote object)")

    def digest(self, path: Path) -> dict:
        """DVC's hash of a file or directory without adding it anywhere: {"md5", "size", "nfiles"}."""
        from dvc_data.hashfile.build import build

        _, meta, obj = build(self.cache, os.fspath(path), self.cache.fs, HASH_NAME, dry_run=True,
                             ignore=_Unversioned())
        return {"md5": obj.hash_info.value, "size": meta.size, "nfiles": meta.nfiles}

    # ------------------------------------------------------------------ manifest keys

    def _remote(self):
        remote = self.repo.cloud.get_remote(self.remote_name)
        return remote.fs, remote.path

    def put_key(self, key: str, data: bytes) -> None:
        """Write bytes at <remote>/<key> (temp file then rename on a local remote; one PUT on S3)."""
        fs, root = self._remote()
        path = fs.join(root, *key.split("/"))
        fs.makedirs(fs.parent(path), exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "blob"
            local.write_bytes(data)
            fs.put_file(os.fspath(local), path)

    def get_key(self, key: str) -> bytes | None:
        fs, root = self._remote()
        path = fs.join(root, *key.split("/"))
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            return None

    def list_keys(self, prefix: str) -> list[str]:
        fs, root = self._remote()
        path = fs.join(root, *prefix.strip("/").split("/"))
        try:
            entries = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        base = fs.join(root, "")
        return sorted(str(e)[len(base):].lstrip("/") if str(e).startswith(base) else str(e) for e in entries)


def open_store(versioning: VersioningParams, remote: str | None = None, repo_root: Path | None = None) -> Store:
    """A Store on the DVC repository at repo_root (default: this checkout).

    Remote, first match: `remote` (a DVC remote name, or a path / URL), `versioning.remote` (the
    same), DVC's default remote (`core.remote`), and last `versioning.local_remote`. The cache is
    `versioning.cache`, with DVC's site cache (hash state, remote index) inside it, so runs rooted
    elsewhere (MTREC_HOME) keep their state out of the checkout.
    """
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.config import Config
    from dvc.repo import Repo

    root = Path(repo_root or REPO_ROOT)
    if not (root / ".dvc").is_dir():
        raise VersioningError(f"{root} is not a DVC repository (no .dvc/): run `dvc init` there "
                              "(`dvc init --subdir` when it is not the git root)")
    cache = Path(versioning.cache)
    overrides: dict = {"cache": {"dir": os.fspath(cache)},
                       "core": {"site_cache_dir": os.fspath(cache / "site")}}
    wanted = remote or versioning.remote
    if not wanted:
        dvc_dir = os.fspath(root / ".dvc")
        wanted = Config(dvc_dir, local_dvc_dir=dvc_dir)["core"].get("remote") or os.fspath(versioning.local_remote)
    if _is_url(wanted):
        url = wanted if "://" in wanted else os.fspath(Path(wanted).expanduser().resolve())
        if "://" not in wanted:
            Path(url).mkdir(parents=True, exist_ok=True)
        overrides["remote"] = {LOCAL_REMOTE: {"url": url}}
        wanted = LOCAL_REMOTE
    repo = Repo(os.fspath(root), config=overrides)
    if wanted not in repo.config["remote"]:
        raise VersioningError(f"no DVC remote named {wanted!r} in {root / '.dvc'} "
                              f"(remotes: {sorted(repo.config['remote'])}); `dvc remote add {wanted} <url>`")
    return Store(repo, wanted, versioning.jobs)


def git_revision(root: Path | None = None) -> dict:
    """{"git_revision": HEAD or None, "dirty": bool, "dirty_paths": [...]} of the checkout at root."""
    import subprocess

    root = Path(root or REPO_ROOT)

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if head is None:
        return {"git_revision": None, "dirty": None, "dirty_paths": []}
    status = git("status", "--porcelain", "--untracked-files=normal") or ""
    paths = sorted(line[3:] for line in status.splitlines() if line.strip())
    return {"git_revision": head.strip(), "dirty": bool(paths), "dirty_paths": paths[:100]}
