"""Records beside ranking files: what made them, so a re-run can tell what is up to date.

``dev_questions_rank.json`` gets ``dev_questions_rank.meta.json`` holding the input's sha256
(with size and mtime, so an unchanged input is not hashed again), the parameters that decide
the ranking, the counts and the lampctl version. Rankings are written before their record, so
a ranking without a matching record is simply redone.

Source paths are stored relative to the record's own folder (``"paths": "relative"``), so a
record is judged the same from any working directory, and survives the data dir being moved or
mounted elsewhere. Records written before that stored paths as given; those are read as given.

What the quick check sees: an input is re-hashed only when its size or mtime differ from the
record's, so a same-size replacement that keeps the old mtime (``cp -p``, ``rsync -t``) passes.
``rehash=True`` (``status --verify``) hashes every input again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lampctl import __version__
from lampctl.errors import InputError, LampctlError
from lampctl.io.data import (
    is_special_file,
    read_json,
    remove_dead_temp_files,
    sha256_file,
    write_json,
)

if TYPE_CHECKING:
    from lampctl.retrieval.encoder import EncoderConfig

RECORD_SUFFIX = ".meta.json"


def ranking_parameters(
    ranker: str,
    encoder: EncoderConfig,
    use_date: bool,
    top_k: int | None = None,
    fmt: str = "json",
) -> dict[str, Any]:
    """What decides a ranking's content (batching, devices and sharding do not): the run's
    choices and the parameters the ranker states for itself."""
    from lampctl.retrieval.rankers import ranker_parameters

    params: dict[str, Any] = {"ranker": ranker, "use_date": use_date, "top_k": top_k, "format": fmt}
    params.update(ranker_parameters(ranker, encoder))
    return params


def stored_path(source: Path, record_folder: Path) -> str:
    """``source`` as a record stores it: relative to the record's folder."""
    return os.path.relpath(os.path.realpath(source), os.path.realpath(record_folder))


def recorded_path(record: dict[str, Any], value: Any, output: Path) -> Path:
    """A source path read back from ``output``'s record, wherever the reader stands."""
    if record.get("paths") == "relative":
        return Path(os.path.normpath(Path(os.path.realpath(output.parent)) / str(value)))
    return Path(str(value))  # an older record: the path as it was given


def record_path(output: Path) -> Path:
    """``dev_questions_rank.json`` -> ``dev_questions_rank.meta.json`` (``.jsonl`` too)."""
    name = output.name
    for suffix in (".jsonl", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output.with_name(name + RECORD_SUFFIX)


def input_fingerprint(
    path: Path, previous: dict[str, Any] | None, rehash: bool = False
) -> dict[str, Any]:
    """sha256, size and mtime of an input; a known sha is reused (``known_sha256``) unless
    ``rehash``."""
    stat = path.stat()
    digest = None if rehash else known_sha256(path, stat, previous)
    return _fingerprint(stat, digest if digest is not None else sha256_file(path))


def _fingerprint(stat: os.stat_result, digest: str) -> dict[str, Any]:
    return {"input_sha256": digest, "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns}


def known_sha256(path: Path, stat: os.stat_result, previous: dict[str, Any] | None) -> str | None:
    """An input's sha256 that need not be computed again: ``previous`` (a record's entry for
    it) where size and mtime still match, else the one ``lampctl download`` recorded in its
    manifest when it wrote this very file (``download.manifest.downloaded_sha256``)."""
    from lampctl.download.manifest import downloaded_sha256

    return reusable_sha256(stat, previous) or downloaded_sha256(path, stat)


def reusable_sha256(stat: os.stat_result, previous: dict[str, Any] | None) -> str | None:
    """The recorded sha256 of an input whose size and mtime still match its record."""
    if (
        previous
        and previous.get("input_size") == stat.st_size
        and previous.get("input_mtime_ns") == stat.st_mtime_ns
        and previous.get("input_sha256")
    ):
        return str(previous["input_sha256"])
    return None


def read_record(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = read_json(path, "ranking record")
    except LampctlError:
        return None  # unreadable record: the job is simply redone
    return data if isinstance(data, dict) else None


def other_parameters(recorded: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """None when they agree, else "stale: other parameters (KEY: RECORDED recorded, WANTED
    now)" naming the first parameter that differs."""
    if recorded == wanted:
        return None
    for key in [*wanted, *(k for k in recorded if k not in wanted)]:
        if recorded.get(key) != wanted.get(key):
            return (
                f"stale: other parameters ({key}: {recorded.get(key)!r} recorded, "
                f"{wanted.get(key)!r} now)"
            )
    return "stale: other parameters"


def _judge_record(
    output: Path, parameters: dict[str, Any], tidy: bool = False
) -> tuple[str | None, dict[str, Any] | None]:
    """What every record check starts with: a verdict if one is already clear (new, no
    record, other parameters, output changed), else None; and the record. A record that is
    missing or unreadable counts as none: the output is stale. ``tidy`` (a command that
    writes, not ``status``) removes temp files that killed writers on this host left: an
    up-to-date output is skipped and never reaches the atomic writer that would."""
    if tidy:
        remove_dead_temp_files(output)
    record = read_record(record_path(output))
    if not output.exists():
        return "new", record
    if record is None:
        return "stale: no record", record
    recorded = record.get("parameters")
    differs = other_parameters(recorded if isinstance(recorded, dict) else {}, parameters)
    if differs:
        return differs, record
    if output_changed(output, record):
        return "stale: file changed", record
    return None, record


def freshness(
    output: Path,
    source: Path,
    parameters: dict[str, Any],
    extra: dict[str, Any] | None = None,
    rehash: bool = False,
    tidy: bool = False,
) -> tuple[str, dict[str, Any] | None]:
    """("up to date" | "stale: why" | "new", record) for a ranking made from ``source``."""
    verdict, record = _judge_record(output, parameters, tidy)
    if verdict is not None:
        return verdict.replace("file changed", "ranking changed"), record
    assert record is not None
    for key, value in (extra or {}).items():
        if record.get(key) != value:
            return other_parameters({key: record.get(key)}, {key: value}) or "", record
    if input_fingerprint(source, record, rehash)["input_sha256"] != record.get("input_sha256"):
        return "stale: input changed", record
    return "up to date", record


def output_changed(output: Path, record: dict[str, Any]) -> bool:
    """Whether ``output`` differs from what its record says was written: by size first, then
    by sha256 (a hand edit that keeps the size is still caught)."""
    if record.get("output_size") != output.stat().st_size:
        return True
    return record.get("output_sha256") != sha256_file(output)


def write_record(
    output: Path,
    source: Path,
    parameters: dict[str, Any],
    counts: tuple[int, int],
    previous: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> None:
    """The record of ``output`` (made from ``source``): (questions, profile items) counted.
    ``fingerprint``: the input's, taken when it was read (else taken now). A device or FIFO
    output (``--output /dev/null``) gets no record."""
    if is_special_file(output):
        return
    write_json(
        record_path(output),
        {
            "lampctl": __version__,
            "paths": "relative",
            "input": stored_path(source, output.parent),
            **(fingerprint or input_fingerprint(source, previous)),
            "output_size": output.stat().st_size,
            "output_sha256": sha256_file(output),
            "parameters": parameters,
            "questions": counts[0],
            "profile_items": counts[1],
            **(extra or {}),
        },
        indent=1,
    )


# --------------------------------------------------------------------------- derived files


def sources_of(**paths: Path | None) -> dict[str, Path]:
    """A derived file's inputs by role (questions, ranking, outputs, ...), in the order given,
    leaving out those it was made without."""
    return {role: path for role, path in paths.items() if path is not None}


def derived_freshness(
    output: Path,
    sources: dict[str, Path],
    parameters: dict[str, Any],
    rehash: bool = False,
    tidy: bool = False,
) -> tuple[str, dict[str, Any] | None]:
    """Like ``freshness`` for a file made from several inputs (a merged file, model inputs):
    ``sources`` names each input by its role (questions, ranking, outputs)."""
    verdict, record = _judge_record(output, parameters, tidy)
    if verdict is not None:
        return verdict, record
    assert record is not None
    known = record.get("sources") or {}
    if set(known) != set(sources):
        return "stale: other inputs", record
    for role, path in sources.items():
        if not path.exists():
            return f"stale: {role} missing", record
        fingerprint = input_fingerprint(path, known[role], rehash)
        if fingerprint["input_sha256"] != known[role].get("input_sha256"):
            return f"stale: {role} changed", record
    return "up to date", record


def write_derived_record(
    output: Path,
    sources: dict[str, Path],
    parameters: dict[str, Any],
    extra: dict[str, Any] | None = None,
    fingerprints: dict[str, dict[str, Any]] | None = None,
    output_sha256: str | None = None,
) -> None:
    """The record of a file made from ``sources`` (role -> path); ``fingerprints`` are the
    inputs' (``source_fingerprints``), taken while they were read, else taken now;
    ``output_sha256`` the output's, hashed as it was written, else read back now."""
    if is_special_file(output):
        return
    fingerprints = fingerprints or source_fingerprints(output, sources)
    write_json(
        record_path(output),
        {
            "lampctl": __version__,
            "paths": "relative",
            "sources": {
                role: {"path": stored_path(path, output.parent), **fingerprints[role]}
                for role, path in sources.items()
            },
            "output_size": output.stat().st_size,
            "output_sha256": output_sha256 or sha256_file(output),
            "parameters": parameters,
            **(extra or {}),
        },
        indent=1,
    )


def source_fingerprints(output: Path, sources: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Each input's fingerprint, reusing a recorded sha256 where size and mtime match: the
    output's own record, else the ranking's record (which hashed the same questions file)."""
    previous = _previous_fingerprints(output, sources)
    return {role: input_fingerprint(path, previous.get(role)) for role, path in sources.items()}


def _previous_fingerprints(output: Path, sources: dict[str, Path]) -> dict[str, Any]:
    previous = dict((read_record(record_path(output)) or {}).get("sources") or {})
    ranking = sources.get("ranking")
    ranking_record = read_record(record_path(ranking)) if ranking is not None else None
    questions = sources.get("questions")
    if (
        "questions" not in previous
        and ranking_record is not None
        and questions is not None
        and recorded_path(ranking_record, ranking_record.get("input", ""), ranking).resolve()
        == questions.resolve()
    ):
        previous["questions"] = ranking_record
    return previous


HASH_FORK_MIN_BYTES = 32_000_000  # below this, hashing here costs less than a process


class PendingFingerprints:
    """``source_fingerprints``, started: the inputs whose sha256 cannot be reused are hashed in
    a forked process while the caller reads them (on two cores, a 556 MB questions file is
    hashed and parsed at once instead of one after the other); here where a fork is unsafe or
    the files are small. ``result()`` waits; ``close()`` stops an unfinished hash."""

    def __init__(self, output: Path, sources: dict[str, Path]) -> None:
        from lampctl.parallel import Forked, fork_is_safe, usable_cpus

        self.sources = sources
        previous = _previous_fingerprints(output, sources)
        self.stats = {role: path.stat() for role, path in sources.items()}
        self.known = {  # the sha256s that need no hashing; None for those that do
            role: known_sha256(path, self.stats[role], previous.get(role))
            for role, path in sources.items()
        }
        self.to_hash = [role for role, digest in self.known.items() if digest is None]
        size = sum(self.stats[role].st_size for role in self.to_hash)
        self.forked: Forked | None = None
        if size >= HASH_FORK_MIN_BYTES and usable_cpus() > 1 and fork_is_safe():
            paths = [sources[role] for role in self.to_hash]
            self.forked = Forked("hashing the inputs", _sha256_files, paths)

    def result(self) -> dict[str, dict[str, Any]]:
        if self.forked is not None:
            hashed = self.forked.result()
        else:
            hashed = _sha256_files([self.sources[role] for role in self.to_hash])
        digests = {**self.known, **dict(zip(self.to_hash, hashed, strict=True))}
        return {role: _fingerprint(self.stats[role], digests[role]) for role in self.sources}

    def close(self) -> None:
        if self.forked is not None:
            self.forked.close()


def _sha256_files(paths: list[Path]) -> list[str]:
    return [sha256_file(path) for path in paths]


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


@contextlib.contextmanager
def held_still(sources: dict[str, Path]) -> Iterator[None]:
    """An ``InputError`` when a source is modified or replaced while the body hashes and reads
    it, so a record never pairs an output with inputs other than those it was built from."""
    before = {role: _stamp(path) for role, path in sources.items()}
    yield
    for role, path in sources.items():
        if _stamp(path) != before[role]:
            raise InputError(
                f"{path}: the {role} file changed while it was being read; run the command again"
            )


def check_ranking_matches(ranking: Path, questions: Path, questions_sha256: str) -> None:
    """An ``InputError`` when ``ranking``'s record says it was made from another version of
    ``questions`` (a ranking without a record cannot be judged and passes)."""
    record = read_record(record_path(ranking))
    made_from = (record or {}).get("input_sha256")
    if made_from and made_from != questions_sha256:
        raise InputError(
            f"{ranking}: stale: made from another version of {questions} (its record's sha256 "
            "differs); rank again, or pass allow_stale=True (--allow-stale) to use it anyway"
        )


def outputs_with_record(output: Path, role: str = "output") -> dict[str, Path]:
    """An output and the record written beside it, by role, for ``check_outputs``."""
    found = {role: output}
    if not is_special_file(output):
        found[f"record of {role}"] = record_path(output)
    return found


class DerivedOutput:
    """A file made from other files (a merged file, model inputs, peft-data rows): the one
    workflow each such command follows. Made before any work, it checks where everything
    goes (``io.outputs.check_outputs``): no output, record included, onto an input, into an
    input folder or onto another output; ``up_to_date`` is the skip (the record, when it says
    the inputs and parameters are those of now; temp files of killed writers are tidied);
    ``held_still`` guards the reading; ``write_record`` writes the record once the output is
    in place. ``also``: the command's other outputs, by the argument that names them."""

    def __init__(
        self,
        output: Path,
        sources: dict[str, Path],
        parameters: dict[str, Any],
        also: Mapping[str, Path] | None = None,
        role: str = "output",
        input_folders: Mapping[str, Path | None] | None = None,
        inputs: Mapping[str, Path | None] | None = None,
    ) -> None:
        from lampctl.io.outputs import check_outputs

        self.output, self.sources, self.parameters = output, sources, parameters
        outputs = {**outputs_with_record(output, role), **(also or {})}
        # ``inputs``: files read that the record does not follow (their effect is in the
        # parameters), checked all the same
        check_outputs(outputs, {**dict(sources), **(inputs or {})}, input_folders=input_folders)

    def up_to_date(self, force: bool = False) -> dict[str, Any] | None:
        """The record, when the output need not be made again; else None."""
        if force:
            return None
        state, record = derived_freshness(self.output, self.sources, self.parameters, tidy=True)
        return (record or {}) if state == "up to date" else None

    def held_still(self) -> contextlib.AbstractContextManager[None]:
        return held_still(self.sources)

    def write_record(
        self,
        extra: dict[str, Any] | None = None,
        fingerprints: dict[str, dict[str, Any]] | None = None,
        output_sha256: str | None = None,
    ) -> None:
        write_derived_record(
            self.output, self.sources, self.parameters, extra, fingerprints, output_sha256
        )
