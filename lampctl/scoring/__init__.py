"""Scoring predictions offline: reading predictions files (``answers``) and the official LaMP
metrics (``metrics``)."""
