"""The per-user training data of the PEFT experiment (``peft-data``): the rows of one user as
the LaMP authors' PEFT code builds them (``rows``) and the files of a set (``files``)."""
