"""The run engine: inference over (models × datasets), output identity, the driver and its lifecycle."""
