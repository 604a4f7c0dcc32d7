"""The pure core of the worker: sequencing, offsets and retry timing. No I/O lives here."""
