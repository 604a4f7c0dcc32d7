"""Commands and helpers around the worker: demo, load, checks, a local broker."""
