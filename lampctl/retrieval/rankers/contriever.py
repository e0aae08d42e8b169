"""Dense retrieval: dot product of mean-pooled query and item vectors (Contriever)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lampctl.retrieval.encoder import Encoder, EncoderConfig, LogFn
from lampctl.retrieval.rankers.base import PreparedQuestion, ProgressFn, Ranker


def checkpoint_identity(checkpoint: str) -> str:
    """A local checkpoint folder by its resolved path (``./minilm``, ``/scratch/minilm/`` and
    ``/scratch/minilm`` are one checkpoint); a hub id as it is."""
    path = Path(checkpoint).expanduser()
    return str(path.resolve()) if path.is_dir() else checkpoint


class ContrieverRanker(Ranker):
    name = "contriever"
    progress_unit = "texts"

    def __init__(
        self, config: EncoderConfig, log: LogFn | None = None, chunk_texts: int = 8192
    ) -> None:
        self.config = config
        self.chunk_texts = chunk_texts
        self._log = log
        self._encoder: Encoder | None = None

    @classmethod
    def create(cls, *, jobs: int, encoder: EncoderConfig, log: LogFn | None) -> ContrieverRanker:
        return cls(encoder, log=log)

    @classmethod
    def record_parameters(cls, encoder: EncoderConfig) -> dict[str, Any]:
        return {
            "checkpoint": checkpoint_identity(encoder.checkpoint),
            "revision": encoder.revision,
            "precision": encoder.precision,
        }

    @property
    def encoder(self) -> Encoder:
        """Loaded on first use, so bad input files fail before a model loads."""
        if self._encoder is None:
            self._encoder = Encoder(self.config, log=self._log)
        return self._encoder

    def describe(self) -> dict[str, object]:
        return {
            "ranker": self.name,
            "checkpoint": self.config.checkpoint,
            "revision": self.config.revision,
            "precision": self.config.precision,
            "max_length": self.encoder.max_length,
        }

    def score(
        self, questions: Sequence[PreparedQuestion], progress: ProgressFn | None = None
    ) -> Iterator[np.ndarray]:
        # Encode many questions' texts together, so batches are long and sorted by length;
        # the next chunk is looked up and tokenized on a thread while this one encodes.
        encoder = self.encoder
        # On a CPU a chunk takes long: smaller chunks keep the progress display moving (batches
        # are sorted within a chunk, and a vector never depends on its batch, so scores match).
        chunk_texts = self.chunk_texts if encoder.device != "cpu" else min(self.chunk_texts, 1024)
        chunks: list[Sequence[PreparedQuestion]] = []
        start = 0
        while start < len(questions):
            end, budget = start, 0
            while end < len(questions) and (end == start or budget < chunk_texts):
                budget += len(questions[end].texts) + 1
                end += 1
            chunks.append(questions[start:end])
            start = end
        if not chunks:
            return

        def texts_of(chunk: Sequence[PreparedQuestion]) -> list[str]:
            return [t for q in chunk for t in (q.query, *q.texts)]

        with ThreadPoolExecutor(max_workers=1) as pool:
            upcoming = pool.submit(encoder.prepare, texts_of(chunks[0]))
            for number, chunk in enumerate(chunks):
                pending = upcoming.result()
                if number + 1 < len(chunks):
                    upcoming = pool.submit(encoder.prepare, texts_of(chunks[number + 1]))
                vectors = encoder.finish(pending)
                offset = 0
                for question in chunk:
                    count = len(question.texts)
                    yield vectors[offset + 1 : offset + 1 + count] @ vectors[offset]
                    offset += 1 + count
                    if progress:
                        progress(1)
