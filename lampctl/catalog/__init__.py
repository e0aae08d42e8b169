"""What LaMP is and where its files live: the task types (``tasks``), the registry file's
parser (``taskfile``), the bundled configs and the registry cache (``bundled``) and the sets of
a data dir (``datadir``)."""
