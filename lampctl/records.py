"""Records beside ranking files: what made them, so a re-run can tell what is up to date.

``dev_questions_rank.json`` gets ``dev_questions_rank.meta.json`` holding the input's sha256
(with size and mtime, so an unchanged input is not hashed again), the parameters that decide
the ranking, the counts and the lampctl version. Rankings are written before their record, so
a ranking without a matching record is simply redone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lampctl import __version__
from lampctl.data import is_special_file, read_json, sha256_file, write_json
from lampctl.encoder import EncoderConfig
from lampctl.errors import LampctlError

RECORD_SUFFIX = ".meta.json"


def ranking_parameters(
    ranker: str,
    encoder: EncoderConfig,
    use_date: bool,
    top_k: int | None = None,
    fmt: str = "json",
) -> dict[str, Any]:
    """What decides a ranking's content (batching, devices and sharding do not)."""
    params: dict[str, Any] = {"ranker": ranker, "use_date": use_date, "top_k": top_k, "format": fmt}
    if ranker == "bm25":
        params.update(k1=1.5, b=0.75, epsilon=0.25)
    elif ranker == "contriever":
        params.update(
            checkpoint=encoder.checkpoint, revision=encoder.revision, precision=encoder.precision
        )
    return params


def record_path(output: Path) -> Path:
    """``dev_questions_rank.json`` -> ``dev_questions_rank.meta.json`` (``.jsonl`` too)."""
    name = output.name
    for suffix in (".jsonl", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output.with_name(name + RECORD_SUFFIX)


def input_fingerprint(path: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
    """sha256, size and mtime of an input; the recorded sha is reused when size and mtime match."""
    stat = path.stat()
    if (
        previous
        and previous.get("input_size") == stat.st_size
        and previous.get("input_mtime_ns") == stat.st_mtime_ns
        and previous.get("input_sha256")
    ):
        digest = previous["input_sha256"]
    else:
        digest = sha256_file(path)
    return {"input_sha256": digest, "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns}


def read_record(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = read_json(path, "ranking record")
    except LampctlError:
        return None  # unreadable record: the job is simply redone
    return data if isinstance(data, dict) else None


def _judge_record(
    output: Path, parameters: dict[str, Any]
) -> tuple[str | None, dict[str, Any] | None]:
    """What every record check starts with: a verdict if one is already clear (new, no
    record, other parameters, output changed), else None; and the record."""
    record = read_record(record_path(output))
    if not output.exists():
        return "new", record
    if record is None:
        return "stale: no record", record
    if record.get("parameters") != parameters:
        return "stale: other parameters", record
    if output_changed(output, record):
        return "stale: file changed", record
    return None, record


def freshness(
    output: Path, source: Path, parameters: dict[str, Any], extra: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any] | None]:
    """("up to date" | "stale: why" | "new", record) for a ranking made from ``source``."""
    verdict, record = _judge_record(output, parameters)
    if verdict is not None:
        return verdict.replace("file changed", "ranking changed"), record
    assert record is not None
    if extra and any(record.get(k) != v for k, v in extra.items()):
        return "stale: other parameters", record
    if input_fingerprint(source, record)["input_sha256"] != record.get("input_sha256"):
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
            "input": str(source),
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


def derived_freshness(
    output: Path, sources: dict[str, Path], parameters: dict[str, Any]
) -> tuple[str, dict[str, Any] | None]:
    """Like ``freshness`` for a file made from several inputs (a merged file, model inputs):
    ``sources`` names each input by its role (questions, ranking, outputs)."""
    verdict, record = _judge_record(output, parameters)
    if verdict is not None:
        return verdict, record
    assert record is not None
    known = record.get("sources") or {}
    if set(known) != set(sources):
        return "stale: other inputs", record
    for role, path in sources.items():
        if not path.exists():
            return f"stale: {role} missing", record
        if input_fingerprint(path, known[role])["input_sha256"] != known[role].get("input_sha256"):
            return f"stale: {role} changed", record
    return "up to date", record


def write_derived_record(
    output: Path,
    sources: dict[str, Path],
    parameters: dict[str, Any],
    extra: dict[str, Any] | None = None,
    fingerprints: dict[str, dict[str, Any]] | None = None,
) -> None:
    """The record of a file made from ``sources`` (role -> path); ``fingerprints`` are the
    inputs' (``source_fingerprints``), taken while they were read, else taken now."""
    if is_special_file(output):
        return
    fingerprints = fingerprints or source_fingerprints(output, sources)
    write_json(
        record_path(output),
        {
            "lampctl": __version__,
            "sources": {
                role: {"path": str(path), **fingerprints[role]} for role, path in sources.items()
            },
            "output_size": output.stat().st_size,
            "output_sha256": sha256_file(output),
            "parameters": parameters,
            **(extra or {}),
        },
        indent=1,
    )


def source_fingerprints(output: Path, sources: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Each input's fingerprint, reusing a recorded sha256 where size and mtime match: the
    output's own record, else the ranking's record (which hashed the same questions file)."""
    previous = dict((read_record(record_path(output)) or {}).get("sources") or {})
    ranking = sources.get("ranking")
    ranking_record = read_record(record_path(ranking)) if ranking is not None else None
    questions = sources.get("questions")
    if (
        "questions" not in previous
        and ranking_record is not None
        and questions is not None
        and Path(str(ranking_record.get("input", ""))).resolve() == questions.resolve()
    ):
        previous["questions"] = ranking_record
    return {role: input_fingerprint(path, previous.get(role)) for role, path in sources.items()}
