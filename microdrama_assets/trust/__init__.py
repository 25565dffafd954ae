"""Trust and safety: content moderation of an episode's text and pictures."""
