"""mtlflow pipelines: configuration, stages, tracking, serving and the ``mtlflow`` CLI."""
