"""Building one file's rows in this process or in forked worker processes (big files)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.catalog.tasks import TaskSpec
from lampctl.errors import InputError, LampctlError
from lampctl.inputs.builder import PromptBuilder, PromptStats, Tally, render_rows
from lampctl.inputs.reading import PromptQuestion, prompt_question_chunks
from lampctl.inputs.tokenizer import ModelTokenizer


@dataclass(frozen=True)
class FileBuild:
    """What building one file's rows takes, in this process or in a worker."""

    task: TaskSpec
    questions_path: Path
    ranking_path: Path | None
    k: int
    max_length: int
    golds: dict[str, Any] | None
    outputs_name: str

    def chunks(self, part: tuple[int, int] = (0, 1)) -> Iterator[list[PromptQuestion]]:
        return prompt_question_chunks(self.questions_path, self.ranking_path, self.k, part=part)

    def build(
        self,
        tokenizer: ModelTokenizer | None,
        chunks: Iterable[list[PromptQuestion]],
        each: Callable[[str, list[PromptQuestion]], None],
    ) -> Tally:
        """Each chunk's rows, handed to ``each`` with the chunk; what the builder counted."""
        builder = PromptBuilder(self.task, tokenizer, self.max_length, str(self.questions_path))
        for chunk in chunks:
            each(render_rows(chunk, builder.add(chunk), self.golds, self.outputs_name), chunk)
        return builder.tally

    def here(
        self,
        tokenizer: ModelTokenizer | Future[ModelTokenizer] | None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[str, PromptStats]:
        """The file's rows, built in this process; a tokenizer still loading (a future) is
        waited for once the questions are read."""
        chunks: Iterable[list[PromptQuestion]] = self.chunks()
        if isinstance(tokenizer, Future):
            chunks = list(chunks)
            tokenizer = tokenizer.result()
        texts: list[str] = []

        def keep(text: str, chunk: list[PromptQuestion]) -> None:
            texts.append(text)
            if progress:
                progress(len(chunk))

        tally = self.build(tokenizer, chunks, keep)
        return "".join(texts), PromptStats.combine([tally])


WORKER_MIN_BYTES = 16_000_000  # of the questions file per worker process
MAX_WORKERS = 8


class WorkerBuild:
    """The rows of a big file built by ``jobs`` forked processes, each reading and building an
    equal run of its questions (each maps the file and finds the questions itself; this
    process only gathers the rows).

    Each worker tokenizes on its own core (the tokenizers library's threads are off in it: they
    would not survive the fork once this process has started them). What the workers run is
    imported before the fork. Errors come back with their messages; the first in file order
    is raised. Workers die with this process.
    """

    def __init__(self, pipes: list[Any], processes: list[Any], questions_path: Path) -> None:
        self.pipes = pipes
        self.processes = processes
        self.questions_path = questions_path

    @classmethod
    def start(
        cls, job: FileBuild, tokenizer: ModelTokenizer | None, jobs: int
    ) -> WorkerBuild | None:
        """Workers started, or None where they do not pay or are not safe: a small file, one
        job, no fork, or torch loaded (its threads do not survive a fork)."""
        from lampctl.parallel import fork_is_safe

        try:
            size = job.questions_path.stat().st_size
        except OSError:
            return None  # the in-process reader names the problem
        # Each worker finds every question in the file (about a quarter of a second for
        # 800 MB) before its own: beyond 8 workers, or under 16 MB each, that does not pay.
        jobs = min(jobs, MAX_WORKERS, size // WORKER_MIN_BYTES)
        if jobs < 2 or not fork_is_safe():
            return None
        import multiprocessing as mp
        import pickle  # noqa: F401 - imported before the fork, for the workers
        import traceback  # noqa: F401

        import lampctl.io.data  # noqa: F401
        import lampctl.io.fastjson  # noqa: F401
        import lampctl.parallel  # noqa: F401

        context = mp.get_context("fork")
        pipes, processes = [], []
        # The library's after-fork hook warns and switches its threads off in a child once this
        # process has used them; the children switch them off themselves, so mark them
        # configured while forking.
        unset = "TOKENIZERS_PARALLELISM" not in os.environ
        if unset:
            os.environ["TOKENIZERS_PARALLELISM"] = "true"
        try:
            for index in range(jobs):
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(
                    target=_build_part,
                    args=(sender, os.getpid(), (index, jobs), job, tokenizer),
                    daemon=True,
                )
                process.start()
                sender.close()
                pipes.append(receiver)
                processes.append(process)
        except OSError:  # no process to be had (memory, process limits): build here instead
            cls(pipes, processes, job.questions_path).close()
            return None
        finally:
            if unset:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
        return cls(pipes, processes, job.questions_path)

    def gather(self, progress: Callable[[int], None] | None = None) -> tuple[str, PromptStats]:
        import pickle
        from multiprocessing.connection import wait

        jobs = len(self.pipes)
        rows: list[list[str]] = [[] for _ in range(jobs)]
        ids: list[list[str]] = [[] for _ in range(jobs)]
        outcome: list[tuple[str, Any] | None] = [None] * jobs
        waiting = {pipe: index for index, pipe in enumerate(self.pipes)}
        while waiting:
            for pipe in wait(list(waiting)):
                index = waiting[pipe]
                try:
                    kind, payload = pickle.loads(self.pipes[index].recv_bytes())
                except EOFError:
                    self.processes[index].join()
                    kind, payload = "died", self.processes[index].exitcode
                if kind == "rows":
                    rows[index].append(payload[0])
                    ids[index].extend(payload[1])
                    if progress:
                        progress(len(payload[1]))
                    continue
                outcome[index] = (kind, payload)
                del waiting[pipe]
            first = next((i for i, o in enumerate(outcome) if o is None or o[0] != "done"), None)
            if first is not None and outcome[first] is not None:
                break  # the first failure in file order is known
        for result in outcome:
            if result is None or result[0] == "done":
                continue
            kind, payload = result
            if kind == "error":
                raise InputError(payload)
            if kind == "died":
                raise LampctlError(
                    f"{self.questions_path}: a worker process building prompts stopped "
                    f"(exit code {payload}); try --jobs 1"
                )
            raise RuntimeError(f"building prompts from {self.questions_path} failed:\n{payload}")
        seen: set[str] = set()
        for part in ids:
            for qid in part:
                if qid in seen:
                    raise InputError(f"{self.questions_path}: duplicate question id {qid!r}")
                seen.add(qid)
        tallies = [payload for _, payload in outcome]  # type: ignore[misc]
        return "".join(text for part in rows for text in part), PromptStats.combine(tallies)

    def close(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join()
        for pipe in self.pipes:
            pipe.close()


def _build_part(
    sender: Any,
    parent: int,
    part: tuple[int, int],
    job: FileBuild,
    tokenizer: ModelTokenizer | None,
) -> None:
    """A worker of ``WorkerBuild``: part ``i`` of ``n`` of the file's rows, a chunk at a time."""
    import pickle
    import traceback

    from lampctl.io.data import gc_paused
    from lampctl.parallel import worker_setup

    worker_setup(parent)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core each; see WorkerBuild

    def send(kind: str, payload: Any) -> None:
        sender.send_bytes(pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL))

    try:
        with gc_paused():
            tally = job.build(
                tokenizer,
                job.chunks(part),
                lambda text, chunk: send("rows", (text, [q.id for q in chunk])),
            )
        send("done", tally)
    except InputError as exc:
        send("error", str(exc))
    except BrokenPipeError:
        pass  # the parent stopped listening: it has an error of its own to report
    except BaseException:
        send("crash", traceback.format_exc())
