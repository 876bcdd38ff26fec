"""Real-image guidance: each class's reference photos, checked, hashed and pinned when the recipe loads, and
turned into the start image of an image-to-image call.

A class's ``reference_images`` is a folder (its ``.png``, ``.jpg``, ``.jpeg`` and ``.webp`` files; hidden and other
files are ignored) or a list of files, relative to the recipe's folder. Every file is read whole when the recipe
loads, before any model: its bytes are hashed (SHA-256, the shards' keys hold it: ``builders.plan``) and its image is
decoded, so a missing folder, an empty one, an unreadable or oversized image (a decompression bomb is refused from its
header) and a symlink leading out of the folder are recipe errors naming the key. A recipe that recorded the hashes
(``reference_sha256``, as every ``recipe.yaml`` does) must find exactly those files: each missing, changed or new
one is named.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from builders.limits import MAX_REFERENCE_BYTES, MAX_REFERENCE_PIXELS, MAX_REFERENCES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class ReferenceSet:
    """One class's references as read: where they are (absolute), each file's SHA-256 by name, and the problems."""

    location: str | list[str] | None = None
    hashes: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def read_references(
    key: str, value: str | list[str], base_dir: Path, recorded: dict[str, str] | None = None
) -> ReferenceSet:
    """The reference set ``value`` names (``key`` is its key path, for the problems), every file checked and
    hashed, and compared with the ``recorded`` hashes when there are any."""
    found = ReferenceSet()
    if isinstance(value, str):
        folder = (base_dir / Path(value).expanduser()).absolute()
        found.location = str(folder)
        files = _folder_files(key, folder, found.problems)
        pairs = [(key, path, folder) for path in files]
    else:
        paths = [(base_dir / Path(item).expanduser()).absolute() for item in value]
        found.location = [str(path) for path in paths]
        pairs = [(f"{key}[{i}]", path, path.parent) for i, path in enumerate(paths)]
        found.problems += _list_problems(key, paths)
    for where, path, folder in pairs:
        digest = _checked_sha256(where, path, folder, found.problems)
        if digest:
            found.hashes[path.name] = digest
    if recorded is not None and not found.problems:
        found.problems += _changes(key, recorded, found.hashes)
    elif recorded is not None:  # the files cannot be read: say which the dataset was made with
        names = sorted(recorded)
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        found.problems.append(
            f"{key}: the dataset was made with {len(names)} files ({shown}; their SHA-256 in "
            "reference_sha256); point it at your copy of them"
        )
    return found


def _folder_files(key: str, folder: Path, problems: list[str]) -> list[Path]:
    """The folder's image files, by name; a problem when it is not a folder or holds none (or too many)."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        problems.append(f"{key}: {folder} {what}; expected a folder of reference images or a list of image files")
        return []
    files = sorted(
        path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )
    if not files:
        problems.append(f"{key}: {folder} holds no image ({', '.join(IMAGE_SUFFIXES)} files)")
    elif len(files) > MAX_REFERENCES:
        problems.append(f"{key}: {folder} holds {len(files):,} images; at most {MAX_REFERENCES:,} per class")
    return files if len(files) <= MAX_REFERENCES else []


def _list_problems(key: str, paths: list[Path]) -> list[str]:
    """A listed file of another type, and two listed files of one name (rows record the file name)."""
    problems = [
        f"{key}[{i}]: {path.name} is not a {', '.join(IMAGE_SUFFIXES)} file"
        for i, path in enumerate(paths)
        if path.suffix.lower() not in IMAGE_SUFFIXES
    ]
    names = [path.name for path in paths]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"{key}: two files share the name {', '.join(repeated)}; rows record the file name")
    return problems


def _checked_sha256(key: str, path: Path, folder: Path, problems: list[str]) -> str | None:
    """The file's SHA-256, once it is known to be a regular file inside ``folder`` holding one readable image of a
    bounded size; otherwise ``None`` and a problem naming ``key``."""
    if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
        problems.append(f"{key}: {path.name} is a symlink to {path.resolve()}, outside {folder}; copy the file in")
        return None
    if not path.is_file():
        problems.append(f"{key}: {path} {'is not a file' if path.exists() else 'does not exist'}")
        return None
    if path.stat().st_size > MAX_REFERENCE_BYTES:
        problems.append(f"{key}: {path.name} is over {MAX_REFERENCE_BYTES // 2**20} MiB; use a smaller image")
        return None
    data = path.read_bytes()
    problem = _image_problem(data)
    if problem:
        problems.append(f"{key}: {path.name} {problem}")
        return None
    return hashlib.sha256(data).hexdigest()


def _image_problem(data: bytes) -> str | None:
    """Why ``data`` is not a usable reference image (``None`` when it is): its header's size is checked before a
    pixel is decoded, then it is decoded whole."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_REFERENCE_PIXELS:
                    return _too_large(width, height)
                image.load()
    except Image.DecompressionBombError:
        return "declares more pixels than PIL will decode (a decompression bomb?)"
    except (OSError, SyntaxError, ValueError) as err:
        return f"cannot be read as an image ({err})"
    return None


def _too_large(width: int, height: int) -> str:
    return (
        f"is {width:,} x {height:,} pixels, over {MAX_REFERENCE_PIXELS:,} (a decompression bomb?); use a smaller image"
    )


def _changes(key: str, recorded: dict[str, str], found: dict[str, str]) -> list[str]:
    """Each recorded file missing or changed, and each file the record does not hold: a rebuild from a dataset's
    ``recipe.yaml`` needs exactly the files that made it."""
    problems = [
        f"{key}: {name} (sha256 {digest[:12]}…) is missing; this dataset was made with it"
        for name, digest in recorded.items()
        if name not in found
    ]
    problems += [
        f"{key}: {name} changed (sha256 {found[name][:12]}…, recorded {digest[:12]}…)"
        for name, digest in recorded.items()
        if name in found and found[name] != digest
    ]
    problems += [
        f"{key}: {name} is not among the recorded reference files (reference_sha256); remove it or the record"
        for name in found
        if name not in recorded
    ]
    return problems


def start_image(path: Path, width: int, height: int) -> Image.Image:
    """The reference as an image-to-image call starts from: turned upright by its EXIF orientation, RGB, resized
    (Lanczos) to cover ``width`` x ``height`` and center-cropped to it (PIL's ``ImageOps.fit``)."""
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    return ImageOps.fit(upright, (width, height), Image.Resampling.LANCZOS)
