"""Media logic as plain functions, free of Dagster: frames, audio, encoding, packaging."""
