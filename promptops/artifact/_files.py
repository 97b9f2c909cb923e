"""Where a project's files are and how they are written: the project root, a prompt's path, atomic writes."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from promptops.errors import PromptFileError, PromptReferenceError, UnknownPromptError, WriteRefusedError, where

PROMPT_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")  # a prompt's name, and its file's in prompts/ (NAME.yaml)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write through a temporary file and `os.replace`, keeping the file's mode (a new file gets the umask's)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        if exc.errno not in WriteRefusedError.REFUSALS:
            raise
        raise WriteRefusedError(path, exc) from None
    try:
        os.fchmod(fd, _mode_for(path))  # mkstemp makes 0600: a prompt file written by promptops must stay readable
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in WriteRefusedError.REFUSALS:  # a full disk, an immutable file
            raise WriteRefusedError(path, exc) from None
        raise
    return path


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def find_project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above `start` that has a `prompts/` folder."""
    env = os.environ.get("PROMPTOPS_PROJECT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "prompts").is_dir():
            return folder
    return here


def resolve_prompt_path(reference: str | Path, root: str | Path | None = None) -> Path:
    """The file of the prompt `reference` names: `banking_intent` is `prompts/banking_intent.yaml`.

    A path to that file (`prompts/banking_intent.yaml`, relative or absolute) names it too. Nothing else
    does: a name is looked up only in the project's `prompts/` folder, so `../x`, `/etc/hostname` or a
    symlink that leads out of the project is refused in one sentence, and so is a prompt file that is a
    folder or a broken or looping symlink.
    """
    project = Path(root) if root else find_project_root()
    folder = project / "prompts"
    text = str(reference)
    if "\0" in text:
        raise PromptReferenceError(f"{text!r} is not a prompt name: it holds a NUL character")
    as_path = isinstance(reference, Path) or any(sep and sep in text for sep in (os.sep, os.altsep, "/")) \
        or text.endswith((".yaml", ".yml"))
    path = _in_prompts_folder(text, folder) if as_path else folder / f"{text}.yaml"
    if not os.path.lexists(path):
        if as_path:
            raise UnknownPromptError(f"{where(path)}: no such prompt file")
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        hint = f"; known prompts: {', '.join(known)}" if known else f"; {folder} has no prompt files"
        raise UnknownPromptError(f"unknown prompt {reference!r}{hint}")
    check_prompt_file(path, project)
    return path


def _in_prompts_folder(text: str, folder: Path) -> Path:
    """`folder/NAME.yaml` for a path that names a file directly in `folder`; refused otherwise."""
    candidate = Path(text)
    try:
        inside = candidate.absolute().parent.resolve() == folder.resolve()
    except (OSError, RuntimeError):  # a looping symlink on the way
        inside = False
    if inside and candidate.suffix in (".yaml", ".yml"):
        return folder / candidate.name
    shown = f"{where(folder)}/"
    if PROMPT_NAME.match(candidate.stem) and candidate.suffix in (".yaml", ".yml"):
        raise PromptReferenceError(f"{text!r} is not in the project's prompts folder ({shown}): "
                                   f"name the prompt instead, as `{candidate.stem}` for {shown}{candidate.stem}.yaml")
    example = next((p.stem for p in sorted(folder.glob("*.yaml")) if PROMPT_NAME.match(p.stem)), "NAME")
    raise PromptReferenceError(f"{text!r} is outside the project's prompts folder ({shown}): a prompt is named by its "
                               f"file there, for example `{example}` for {shown}{example}.yaml")


def check_prompt_file(path: Path, project: str | Path | None = None) -> None:
    """Refuse, naming `path`, a prompt file that is a folder, a broken or looping symlink, or a symlink out of `project`."""
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        if not path.is_symlink():
            raise UnknownPromptError(f"{where(path)}: no such prompt file") from None
        raise PromptFileError(path, None, f"a broken symlink (its target {os.readlink(path)} does not exist); "
                                          "point it at a prompt file or remove it") from None
    except (OSError, RuntimeError):  # RuntimeError is Python 3.11's "Symlink loop"; later versions raise OSError(ELOOP)
        link = f" (to {os.readlink(path)})" if path.is_symlink() else ""
        raise PromptFileError(path, None, f"a symlink that loops back on itself{link}; point it at a prompt file or remove it") from None
    if project is not None:
        home = Path(project).resolve()
        if target != home and home not in target.parents:
            raise PromptReferenceError(
                f"{where(path)} leads to {target}, outside the project ({home}); copy the file into prompts/ instead of linking it")
    if target.is_dir():
        raise PromptFileError(path, None, "a folder, not a prompt file; a prompt is one YAML file, so remove or rename the folder")
