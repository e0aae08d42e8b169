"""Ranking each question's profile: the queries (``queries``), the rankers (``rankers``: BM25,
Contriever, recency, one interface), the dense encoder and its cache (``encoder``,
``embcache``), one ranking file (``ranking``), the bundled best ranker per task over a data dir
(``rankall``) and SLURM shards of a ranking (``shards``)."""
