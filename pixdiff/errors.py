"""The one exception type for bad user input: the CLI prints its message on one line and exits non-zero."""


class InputError(ValueError):
    """Bad input from the user (paths, images, latents, weights, options). The message says what and where."""
