"""lampctl: download, build and rank the LaMP personalization benchmark."""

__version__ = "0.1.0"
