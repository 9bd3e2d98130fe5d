"""glossi-watch: a hot-folder uploader for the Glossi Jobs API."""

__version__ = "0.1.0"
