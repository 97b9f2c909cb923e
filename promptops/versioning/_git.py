"""The only module that talks to git: a prompt's versions, its text at a version, commits and tags.

A prompt is one file, so its versions are simply the commits that changed that file, numbered
v1, v2, ... oldest first along the current branch. Nothing is stored besides git itself: the
numbering is recomputed from `git log`, so it can never disagree with the history.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from promptops._text import decode_utf8
from promptops.errors import NothingToCommitError, PromptFileError, RepositoryError, UnknownVersionError, WriteRefusedError, where

if TYPE_CHECKING:
    import git

    from promptops.artifact import Prompt

CHANNELS = ("production", "staging", "candidate")
_VERSION_LABEL = re.compile(r"^v(\d+)$")
# Unit and record separators: they cannot occur in a sha, a date, a name or a commit message.
_FIELD, _RECORD = "\x1f", "\x1e"
# What to do about a committed file that is not UTF-8: history cannot be re-saved, only superseded.
_UNREADABLE_VERSION = "this version cannot be read, so use another one (or commit the file again as UTF-8)"


@dataclass(frozen=True)
class FileRevision:
    """Where a file stands in git: the last commit that touched it and whether the work tree differs."""

    commit: Optional[str]
    dirty: bool


def file_revision(path: str | Path) -> FileRevision:
    """The file's git state; (None, True) outside a repository or for an uncommitted file."""
    try:
        repo = open_repo(path)
        if not repo.head.is_valid():  # a repository with no commits yet
            return FileRevision(None, True)
        commit = repo.git.log("-1", "--format=%H", "--", relative_path(repo, path)) or None
    except RepositoryError:
        return FileRevision(None, True)
    return FileRevision(commit, commit is None or has_uncommitted_changes(path))


@dataclass(frozen=True)
class PromptVersion:
    """One commit that changed a prompt file; `number` counts from 1 along the branch."""

    number: int
    commit: str
    date: datetime
    author: str
    message: str

    @property
    def label(self) -> str:
        return f"v{self.number}"

    @property
    def short(self) -> str:
        return self.commit[:8]

    def summary(self) -> dict[str, Any]:
        """Flat and JSON-ready, for `--json` and notebooks."""
        return {"version": self.label, "number": self.number, "commit": self.commit, "short": self.short,
                "date": self.date.isoformat(), "author": self.author, "message": self.message}


def _import_git() -> Any:
    """GitPython, which looks for the git program when first imported; without one, one sentence saying what to do."""
    try:
        import git
    except ImportError as exc:
        if "git executable" not in str(exc):  # GitPython itself is missing: a broken install keeps its traceback
            raise
        raise RepositoryError("promptops needs the git program, which is not on PATH: install git, or set "
                              "GIT_PYTHON_GIT_EXECUTABLE to the full path of the git executable") from None
    return git


def check_git() -> None:
    """Refuse, in one sentence, before anything is written, where there is no git program to commit with."""
    _import_git()


# --- reading history -----------------------------------------------------------------


def open_repo(path: str | Path) -> "git.Repo":
    """The repository whose work tree holds `path` (which need not exist yet)."""
    git = _import_git()

    path = Path(path).resolve()
    start = next((folder for folder in (path, *path.parents) if folder.is_dir()), path)
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise RepositoryError(f"not inside a git repository: {path} (run `git init` in the project folder)") from None
    if repo.bare or not repo.working_tree_dir:
        raise RepositoryError(f"the git repository at {repo.git_dir} has no work tree, so {path} cannot be versioned")
    return repo


def relative_path(repo: "git.Repo", path: str | Path) -> str:
    """`path` relative to the work tree, with forward slashes, as git names it."""
    root = Path(repo.working_tree_dir).resolve()
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        raise RepositoryError(f"{resolved} is outside the git repository at {root}") from None


def prompt_versions(prompt_file: str | Path) -> list[PromptVersion]:
    """Every commit on the current branch that changed the file, oldest (v1) first; [] if never committed.

    A commit that deletes the file is not a version: there is nothing to load at it.
    """
    repo = open_repo(prompt_file)
    if not repo.head.is_valid():  # no commits yet
        return []
    relative = relative_path(repo, prompt_file)
    # --date-order never lists a parent before its child, so numbers follow the history.
    output = repo.git.log("--date-order", "--reverse", f"--format=%H{_FIELD}%cI{_FIELD}%an <%ae>{_FIELD}%B{_RECORD}",
                          "--", relative)
    deletions = set(repo.git.log("--diff-filter=D", "--format=%H", "--", relative).split())
    versions = []
    for record in output.split(_RECORD):
        if not record.strip():
            continue
        commit, date, author, body = record.strip("\n").split(_FIELD, 3)
        if commit in deletions:
            continue
        message = next(iter(body.strip().splitlines()), "")
        versions.append(PromptVersion(len(versions) + 1, commit, datetime.fromisoformat(date), author, message))
    return versions


def resolve_version(prompt_file: str | Path, ref: str) -> PromptVersion:
    """The version `ref` names: `v3`, or the version in effect at a commit, tag or branch (`HEAD~2`).

    `vN` wins over a branch or tag of the same name; channel names are reserved for channels.
    """
    name = Path(prompt_file).stem
    if ref in CHANNELS:
        raise UnknownVersionError(f"{ref!r} is a channel of prompt {name!r}: resolve it with channels.resolve")
    versions = prompt_versions(prompt_file)
    label = _VERSION_LABEL.match(ref)
    if label:
        number = int(label[1])
        if 1 <= number <= len(versions):
            return versions[number - 1]
        raise UnknownVersionError(f"prompt {name!r} has no version {ref}; it has {_version_range(versions)}")
    repo = open_repo(prompt_file)
    relative = relative_path(repo, prompt_file)
    commit = resolve_commit(repo, ref)
    if commit is None:
        raise UnknownVersionError(
            f"{ref!r} is neither a version of prompt {name!r} ({_version_range(versions)}) nor a commit, tag or branch")
    if not _exists_at(repo, commit, relative):
        raise UnknownVersionError(f"prompt {name!r} did not exist at {ref} ({commit[:8]}): {relative} is not in that commit")
    last_change = repo.git.log("-1", "--format=%H", commit, "--", relative)
    by_commit = {version.commit: version for version in versions}
    if last_change not in by_commit:
        raise UnknownVersionError(
            f"{ref} ({commit[:8]}) is not in the history of the current branch, so prompt {name!r} has no version number there")
    return by_commit[last_change]


def read_text_at(prompt_file: str | Path, commit: str) -> str:
    """The file's text exactly as committed (`git show commit:path`)."""
    repo = open_repo(prompt_file)
    relative = relative_path(repo, prompt_file)
    resolved = resolve_commit(repo, commit)
    if resolved is None:
        raise UnknownVersionError(f"{commit!r} is not a commit, tag or branch in {repo.working_tree_dir}")
    try:
        blob = repo.commit(resolved).tree / relative
    except KeyError:
        raise UnknownVersionError(f"{relative} does not exist at {commit} ({resolved[:8]})") from None
    return decode_utf8(blob.data_stream.read(), f"{relative}@{resolved[:8]}", PromptFileError, advice=_UNREADABLE_VERSION)


def load_prompt_at(prompt_file: str | Path, commit: str) -> "Prompt":
    """The prompt as committed; validation errors name `path@commit` and the line."""
    from promptops.artifact import parse_prompt

    repo = open_repo(prompt_file)
    relative = relative_path(repo, prompt_file)
    return parse_prompt(read_text_at(prompt_file, commit), f"{relative}@{commit[:8]}")


def has_uncommitted_changes(prompt_file: str | Path) -> bool:
    """True if the file is staged, modified, deleted or untracked, i.e. differs from HEAD."""
    repo = open_repo(prompt_file)
    relative = relative_path(repo, prompt_file)
    return bool(repo.git.status("--porcelain", "--untracked-files=all", "--", relative).strip())


def is_conflicted(repo: "git.Repo", path: str | Path) -> bool:
    """True if the file has unmerged entries in the index (a merge, rebase or cherry-pick stopped on it)."""
    return bool(repo.git.ls_files("--unmerged", "--", relative_path(repo, path)).strip())


def parse_prompt_ref(text: str) -> tuple[str, Optional[str]]:
    """`banking_intent@v2` as (`banking_intent`, `v2`); without `@`, the ref is None: the working file."""
    name, at, ref = text.partition("@")
    if not name or (at and not ref):
        raise UnknownVersionError(f"{text!r} is not NAME or NAME@VERSION (for example banking_intent@v2)")
    return name, (ref if at else None)


def read_committed(repo: "git.Repo", relative: str, commit: str = "HEAD") -> Optional[str]:
    """The text of `relative` as committed at `commit` (HEAD by default); None if it is not in that commit."""
    git = _import_git()

    if not repo.head.is_valid():
        return None
    try:
        data = repo.git.show(f"{commit}:{relative}", strip_newline_in_stdout=False, stdout_as_string=False)
    except git.GitCommandError:
        return None
    return decode_utf8(data, f"{relative}@{commit[:8] if len(commit) == 40 else commit}", PromptFileError, advice=_UNREADABLE_VERSION)


def has_commit(repo: "git.Repo", commit: str) -> bool:
    """True if the object database holds `commit`, whether or not any branch reaches it."""
    return resolve_commit(repo, commit) is not None


def blob_id(repo: "git.Repo", commit: str, relative: str) -> Optional[str]:
    """The git object id of the file at `commit`: equal ids mean byte-identical content."""
    git = _import_git()

    try:
        return repo.git.rev_parse("--verify", "--quiet", f"{commit}:{relative}") or None
    except git.GitCommandError:
        return None


def version_label(prompt_file: str | Path, commit: str, history: Optional[list[PromptVersion]] = None) -> Optional[str]:
    """`vN` of the version made by `commit` on the current branch; else of the version whose file is
    byte-identical (a squash or rebase rewrote the commit, not the content); else None."""
    history = prompt_versions(prompt_file) if history is None else history
    by_commit = {version.commit: version for version in history}
    if commit in by_commit:
        return by_commit[commit].label
    repo = open_repo(prompt_file)
    relative = relative_path(repo, prompt_file)
    wanted = blob_id(repo, commit, relative)
    if wanted is None:
        return None
    for version in reversed(history):
        if blob_id(repo, version.commit, relative) == wanted:
            return version.label
    return None


# --- changing history ----------------------------------------------------------------


def commit_paths(repo: "git.Repo", paths: list[Path], message: str) -> str:
    """Commit exactly `paths` (additions, edits and deletions) and return the new sha.

    Other staged or unstaged changes stay where they are and out of the commit.
    """
    relatives = [relative_path(repo, path) for path in paths]
    known = [r for r in relatives if (Path(repo.working_tree_dir) / r).exists() or _is_tracked(repo, r)]
    where_ = ", ".join(relatives[:3]) + (f" and {len(relatives) - 3} more files" if len(relatives) > 3 else "") or "no paths"
    with _git_errors(f"commit {where_}"):
        if known:
            repo.git.add("--all", "--", *known)
        staged = repo.git.diff("--cached", "--name-only", "--", *known) if known else ""
        if not staged.strip():
            raise NothingToCommitError(f"nothing to commit: {where_} unchanged since the last commit")
        repo.git.commit("--only", "--quiet", "-m", message, "--", *known)
    return repo.head.commit.hexsha


def commit_new_project(folder: Path, paths: list[Path], message: str) -> str:
    """Commit a new project's files: in the repository holding `folder`, else in a new one made there.

    Where no git identity is configured (`user.name`, `user.email` at any level), the repository
    gets a local fallback, as `make demo` does: promptops commits on a promotion, so it needs one.
    """
    git = _import_git()

    try:
        repo = open_repo(folder)
    except RepositoryError:
        with _git_errors(f"make a repository in {folder}"):
            repo = git.Repo.init(folder)
    for key, fallback in (("user.name", "promptops"), ("user.email", "promptops@localhost")):
        try:
            repo.git.config("--get", key)
        except git.GitCommandError:
            with _git_errors(f"set {key} in {folder}"):
                repo.git.config(key, fallback)
    return commit_paths(repo, paths, message)


def make_commit(repo: "git.Repo", path: str | Path, text: str, message: str, *, parent: str) -> str:
    """A commit object whose tree is `parent`'s with `path` holding `text`; no branch, index or file moves.

    With `move_head` this commits in one atomic step: the branch moves with one
    compare-and-swap, which git refuses if someone else moved it meanwhile, and a process killed
    before that leaves nothing but an unreferenced object. Other changes in the index and the
    work tree are never touched; `sync_work_tree` brings the file itself up to date afterwards.
    """
    relative = relative_path(repo, path)
    scratch = Path(repo.git_dir) / f"promptops-{os.getpid()}"
    environment = {"GIT_INDEX_FILE": f"{scratch}.index"}
    try:
        with _git_errors(f"commit {relative}"):
            Path(f"{scratch}.blob").write_text(text, encoding="utf-8")
            blob = repo.git.hash_object("-w", f"--path={relative}", f"{scratch}.blob")
            repo.git.read_tree(parent, env=environment)
            repo.git.update_index("--add", "--cacheinfo", f"100644,{blob},{relative}", env=environment)
            tree = repo.git.write_tree(env=environment)
            return repo.git.commit_tree(tree, "-p", parent, "-m", message)
    finally:
        Path(f"{scratch}.index").unlink(missing_ok=True)
        Path(f"{scratch}.blob").unlink(missing_ok=True)


def sync_work_tree(repo: "git.Repo", path: str | Path, commit: str = "HEAD") -> None:
    """Make the work tree file and its index entry equal to `commit`'s (atomically for the file)."""
    from promptops.artifact import atomic_write_text

    relative = relative_path(repo, path)
    text = read_committed(repo, relative, commit)
    target = Path(repo.working_tree_dir) / relative
    if text is None:
        target.unlink(missing_ok=True)
        with _git_errors(f"update the index for {relative}"):
            repo.git.update_index("--force-remove", "--", relative)
        return
    try:
        unchanged = target.read_text(encoding="utf-8") == text
    except (FileNotFoundError, UnicodeDecodeError):
        unchanged = False
    if not unchanged:
        atomic_write_text(target, text)
    with _git_errors(f"update the index for {relative}"):
        repo.git.update_index("--add", "--", relative)


class IndexLock:
    """git's own index lock (`.git/index.lock`), held across a branch move as `git commit` holds it.

    A promotion changes three things git keeps apart: the branch, the index and the work tree. Done
    one after the other, a process killed in between leaves the index holding the old channels file
    staged against the new commit (or the reverse), and the user's next `git commit -am` quietly
    undoes the move. Holding the lock for the whole change makes every git command that writes the
    index (`commit`, `add`, `checkout`, `stash`) refuse until the move is finished or undone: the new
    index is built inside the lock file and renamed over `.git/index` only after the branch moved.
    A killed process leaves the lock behind; the journal records its inode so that recovery removes
    that lock file and no other.
    """

    def __init__(self, repo: "git.Repo") -> None:
        self.repo = repo
        self.path = git_dir(repo) / "index.lock"
        self.inode: Optional[int] = None

    def __enter__(self) -> "IndexLock":
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            raise RepositoryError(index_locked_message(self.repo)) from None
        except OSError as exc:
            if exc.errno not in WriteRefusedError.REFUSALS:
                raise
            raise WriteRefusedError(self.path, exc) from None
        try:
            index = git_dir(self.repo) / "index"
            if index.exists():
                os.write(descriptor, index.read_bytes())
            self.inode = os.fstat(descriptor).st_ino
        finally:
            os.close(descriptor)
        if not index.exists():
            self.repo.git.read_tree("HEAD", env={"GIT_INDEX_FILE": str(self.path)})
        return self

    def stage(self, path: str | Path, text: str) -> None:
        """Write the work tree file (atomically) and its entry in the index being built."""
        from promptops.artifact import atomic_write_text

        relative = relative_path(self.repo, path)
        atomic_write_text(Path(self.repo.working_tree_dir) / relative, text)
        # git writes an index through `<file>.lock` and a rename, which would give the lock file a new inode:
        # build it in a scratch file and copy the bytes into the lock file, which keeps the inode the journal names.
        scratch = git_dir(self.repo) / f"promptops-{os.getpid()}.index"
        try:
            with _git_errors(f"stage {relative}"):
                scratch.write_bytes(self.path.read_bytes())
                self.repo.git.update_index("--add", "--", relative, env={"GIT_INDEX_FILE": str(scratch)})
                with open(self.path, "r+b") as handle:
                    handle.truncate(0)
                    handle.write(scratch.read_bytes())
        finally:
            scratch.unlink(missing_ok=True)

    def publish(self) -> None:
        """The new index becomes the index; the lock is released by the same rename, as git does it."""
        os.replace(self.path, git_dir(self.repo) / "index")
        self.inode = None

    def __exit__(self, *exc_info: Any) -> None:
        if self.inode is not None:
            release_index_lock(self.repo, self.inode)
            self.inode = None


def release_index_lock(repo: "git.Repo", inode: Optional[int]) -> bool:
    """Remove `.git/index.lock` if it is the file a promotion created (same inode); True if it was removed."""
    path = git_dir(repo) / "index.lock"
    try:
        if inode is not None and path.stat().st_ino == inode:
            path.unlink()
            return True
    except FileNotFoundError:
        pass
    return False


def index_locked_message(repo: "git.Repo") -> str:
    return _lock_held_message(git_dir(repo) / "index.lock", repo.working_tree_dir)


def _lock_held_message(path: str | Path, work_tree: Optional[str] = None) -> str:
    """A git lock file that exists: a git command holds it, or a killed one left it behind."""
    held = "git's index is locked" if Path(path).name == "index.lock" else "a git lock is held"
    return (f"{held} ({path} exists): another git command is running{f' in {work_tree}' if work_tree else ''}, or one was "
            "killed and left the file; wait for it to end, or remove the file if no git command is running, then run again")


def branch_problem(repo: "git.Repo") -> Optional[str]:
    """Why a channel move cannot be committed on the current branch now, in one sentence; None if it can.

    A move is a commit on a branch: on a detached HEAD it would be lost at the next checkout, and in
    the middle of a merge, rebase, cherry-pick or revert it would be mixed into the user's work."""
    where = repo.working_tree_dir
    if not repo.head.is_valid():
        return f"the git repository at {where} has no commits yet: commit the prompts first"
    folder = git_dir(repo)
    for marker, operation, finish in (("MERGE_HEAD", "a merge", "git commit` or `git merge --abort"),
                                      ("rebase-merge", "a rebase", "git rebase --continue` or `git rebase --abort"),
                                      ("rebase-apply", "a rebase", "git rebase --continue` or `git rebase --abort"),
                                      ("CHERRY_PICK_HEAD", "a cherry-pick", "git cherry-pick --continue` or `git cherry-pick --abort"),
                                      ("REVERT_HEAD", "a revert", "git revert --continue` or `git revert --abort"),
                                      ("BISECT_LOG", "a bisect", "git bisect reset")):
        if (folder / marker).exists():
            return f"{operation} is in progress in {where}: finish it (`{finish}`), then run again"
    if repo.head.is_detached:
        return (f"HEAD is detached at {repo.head.commit.hexsha[:8]} in {where}: a channel move is a commit on a branch, "
                "and a commit on a detached HEAD is lost at the next checkout; check out the branch the channels live on "
                "(for example `git checkout main`), then run again")
    return None


def author_identity(repo: "git.Repo") -> Optional[str]:
    """`Name <email>`: the author git writes into the next commit (GIT_AUTHOR_NAME and the config), or None."""
    git = _import_git()

    try:
        ident = repo.git.var("GIT_AUTHOR_IDENT")
    except git.GitCommandError:
        return None
    return ident.rsplit(">", 1)[0] + ">" if ">" in ident else None


def move_head(repo: "git.Repo", new: str, *, expected: str) -> None:
    """Move the current branch from `expected` to `new` in one compare-and-swap (`git update-ref`)."""
    with _git_errors(f"move HEAD from {expected[:8]} to {new[:8]}"):
        repo.git.update_ref("-m", f"promptops: {new[:8]}", "HEAD", new, expected)


def tag(repo: "git.Repo", name: str, commit: str, message: str) -> None:
    """Create an annotated tag; a no-op if it already marks `commit`, an error if it marks another."""
    target = resolve_commit(repo, commit)
    if target is None:
        raise UnknownVersionError(f"cannot tag {name!r}: {commit!r} is not a commit, tag or branch")
    existing = resolve_commit(repo, f"refs/tags/{name}")
    if existing == target:
        return
    if existing is not None:
        raise RepositoryError(f"tag {name!r} already marks {existing[:8]}, not {target[:8]}; delete it first to move it")
    with _git_errors(f"create tag {name!r}"):
        repo.git.tag("--annotate", "--message", message, "--", name, target)


def delete_tag(repo: "git.Repo", name: str) -> None:
    """Remove the tag if present; deleting what is not there is not an error."""
    if resolve_commit(repo, f"refs/tags/{name}") is not None:
        with _git_errors(f"delete tag {name!r}"):
            repo.git.tag("--delete", "--", name)


def reset_paths_to(repo: "git.Repo", commit: str, *, expected_head: Optional[str] = None) -> None:
    """Move HEAD back to `commit`, undoing the commits after it, e.g. when a later promotion step fails.

    Uses `git reset --keep`: files the undone commits changed go back to `commit`, every other
    uncommitted change in the work tree is kept, and git refuses (nothing happens) if one of
    those files also has uncommitted changes. `expected_head` guards against undoing a commit
    someone else made in between; `commit` must be an ancestor of HEAD.
    """
    target = resolve_commit(repo, commit)
    if target is None:
        raise UnknownVersionError(f"cannot reset to {commit!r}: not a commit, tag or branch")
    head = repo.head.commit.hexsha
    if expected_head is not None and resolve_commit(repo, expected_head) != head:
        raise RepositoryError(f"HEAD moved to {head[:8]} (expected {expected_head[:8]}), so it was not reset to {target[:8]}")
    if not repo.is_ancestor(target, head):
        raise RepositoryError(f"{target[:8]} is not an ancestor of HEAD ({head[:8]}), so resetting to it would not undo commits")
    with _git_errors(f"reset to {target[:8]}"):
        repo.git.reset("--keep", target)


def undo_commit(repo: "git.Repo", commit: str, paths: list[Path]) -> None:
    """Go back to `commit`, provided the commits since changed only `paths`: the undo of a failed multi-step change.

    Refuses rather than undo someone else's work that landed in between.
    """
    allowed = {relative_path(repo, path) for path in paths}
    changed = {name for name in repo.git.diff("-z", "--name-only", commit, "HEAD", "--").split("\0") if name}
    others = sorted(changed - allowed)
    if others:
        raise RepositoryError(f"not undoing the commits after {commit[:8]}: they also change {', '.join(others)}")
    reset_paths_to(repo, commit)


# --- helpers -------------------------------------------------------------------------


def resolve_commit(repo: "git.Repo", ref: str) -> Optional[str]:
    """The full sha `ref` names, or None; a leading '-' is never passed to git as an option."""
    git = _import_git()

    if not ref or ref.startswith("-"):
        return None
    try:
        return repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}") or None
    except git.GitCommandError:
        return None


def _exists_at(repo: "git.Repo", commit: str, relative: str) -> bool:
    git = _import_git()

    try:
        repo.git.cat_file("-e", f"{commit}:{relative}")
    except git.GitCommandError:
        return False
    return True


def _is_tracked(repo: "git.Repo", relative: str) -> bool:
    return bool(repo.git.ls_files("--", relative).strip())


def _version_range(versions: list[PromptVersion]) -> str:
    if not versions:
        return "no committed versions yet"
    if len(versions) == 1:
        return "only v1"
    return f"v1..v{len(versions)}"


@contextmanager
def _git_errors(doing: str) -> Iterator[None]:
    """A git command that fails, as `git could not {doing}: {why}`; a write the OS refuses, naming the file."""
    git = _import_git()
    try:
        yield
    except git.GitCommandError as exc:
        raise RepositoryError(f"git could not {doing}: {_git_reason(exc)}") from None
    except OSError as exc:
        if exc.errno not in WriteRefusedError.REFUSALS:
            raise
        raise WriteRefusedError(exc.filename or doing, exc) from None


# git's "fatal: Unable to create '/repo/.git/index.lock': File exists." (or Permission denied, ...)
_CANNOT_CREATE = re.compile(r"Unable to create '([^']+)': ([^.\n]+)")


def _git_reason(exc: Any) -> str:
    """git's own first line of complaint, without the command echo GitPython adds; a lock file or a
    read-only .git said in words, with what to do."""
    stderr = str(getattr(exc, "stderr", "") or "").strip().strip("'").strip()
    cannot = _CANNOT_CREATE.search(stderr)
    if cannot and cannot[2].startswith("File exists"):
        return _lock_held_message(cannot[1])
    if cannot:
        return f"{where(cannot[1])} cannot be created ({cannot[2].strip()}); make {where(Path(cannot[1]).parent)} writable for this user"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = next((line for line in lines if line.lower().startswith(("fatal:", "error:"))), lines[0] if lines else str(exc))
    return reason.removeprefix("stderr:").strip()


def head_commit(repo: "git.Repo") -> str:
    """The commit HEAD points at."""
    return repo.head.commit.hexsha


def git_dir(repo: "git.Repo") -> Path:
    """The repository's .git folder, where the promote lock and journal live (never in the work tree)."""
    return Path(repo.git_dir)


# --- what a change touches (`promptops check`) -------------------------------------------------

# Where a branch is taken to have left from, first found wins; GITHUB_BASE_REF comes first in CI.
DEFAULT_BASES = ("main", "origin/main", "master", "origin/master")


def resolve_base(repo: Any, base: Optional[str] = None) -> tuple[str, str]:
    """(the ref used, the commit): the merge-base of HEAD and `base`, as `git diff base...` takes it.

    Without `base`: origin/$GITHUB_BASE_REF in a pull-request build, else main, origin/main,
    master, origin/master; with none of them, HEAD (the check covers uncommitted changes)."""
    git = _import_git()

    if not repo.head.is_valid():
        raise RepositoryError(f"the git repository at {repo.working_tree_dir} has no commits yet: commit the prompts, then check")
    if base is not None:
        candidates = [base]
    else:
        in_ci = os.environ.get("GITHUB_BASE_REF")
        candidates = [f"origin/{in_ci}"] * bool(in_ci) + list(DEFAULT_BASES)
    for ref in candidates:
        commit = resolve_commit(repo, ref)
        if commit is None:
            continue
        try:
            return ref, repo.git.merge_base("HEAD", commit)
        except git.GitCommandError:
            raise RepositoryError(f"HEAD and {ref} have no common history, so there is no base to compare with: pass --base REF") from None
    if base is not None:
        raise RepositoryError(f"--base {base!r} is not a commit, tag or branch in {repo.working_tree_dir}")
    return "HEAD", repo.head.commit.hexsha


def changed_paths(repo: Any, base_commit: str) -> list[Path]:
    """Files that differ between `base_commit` and the work tree, untracked ones included, as absolute paths."""
    root = Path(repo.working_tree_dir).resolve()
    tracked = repo.git.diff("--name-only", "--no-renames", "-z", base_commit, "--").split("\0")
    untracked = repo.git.ls_files("--others", "--exclude-standard", "-z").split("\0")
    return sorted({root / name for name in tracked + untracked if name})
