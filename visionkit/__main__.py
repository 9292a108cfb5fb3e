from visionkit.cli import entrypoint

entrypoint()
