"""The running worker: composition root, pipeline, output and parking."""
