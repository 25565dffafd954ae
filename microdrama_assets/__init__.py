"""microdrama: a logline becomes a vertical, mobile-ready episode through a Dagster asset graph."""
